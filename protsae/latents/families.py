"""Families stage: protein family labels from Swiss-Prot, InterPro or Pfam hits, in one table.

METHODS section 5 scores each SAE latent against protein families. The families come from
InterPro, through one of three sources, each read here into the same label table:

* ``swissprot_dat``: the ``DR   InterPro;`` cross-references of a Swiss-Prot flat file; a protein
  without any takes its ``DR   Pfam;`` cross-references mapped to InterPro (given a mapping);
* ``protein2ipr``: InterPro's ``protein2ipr.dat.gz`` (streamed; the real file is ~100 GB);
* ``pfam_hits``: Pfam domains found with HMMER at the gathering cutoffs (`run_hmmsearch`), mapped
  to InterPro.

Label table (`LABEL_COLUMNS`; a DataFrame of strings, TSV with a header on disk):

    protein    UniProt accession, e.g. P68871
    accession  InterPro accession, e.g. IPR000971
    type       InterPro entry type as InterPro spells it (`INTERPRO_TYPES`), or ``unknown`` when the
               entries table does not know the accession
    name       InterPro entry name
    source     ``swissprot_dat``, ``protein2ipr`` or ``pfam_hits``

One row per (protein, accession), sorted by protein then accession. `combine_labels` merges the
sources by priority and `filter_types` keeps the entry types the config asks for (the paper uses
Family only).

Pfam hit table (`PFAM_HIT_COLUMNS`, the bundle's ``*.pfam.tsv.gz`` format): one row per included
domain, with ``accession`` (UniProt), ``pfam_acc`` (no version), ``pfam_name``, ``interpro_acc`` and
``interpro_type`` (empty when the family is not integrated in InterPro), ``env_from``/``env_to``
(1-based inclusive envelope), ``bitscore`` (domain bits) and ``evalue`` (independent E-value).

Every reader raises `FamilyFormatError` (a ValueError) naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import pandas as pd

from protsae.files import atomic_path
from protsae.sequences.fasta import (
    FastaRecord,
    open_text,
    read_fasta,
    uniprot_accession,
    write_fasta,
)

LABEL_COLUMNS = ["protein", "accession", "type", "name", "source"]
SOURCES = ("swissprot_dat", "protein2ipr", "pfam_hits")
INTERPRO_TYPES = (
    "Family",
    "Domain",
    "Repeat",
    "Conserved_site",
    "Homologous_superfamily",
    "PTM",
    "Active_site",
    "Binding_site",
)
UNKNOWN_TYPE = "unknown"
PFAM_HIT_COLUMNS = [
    "accession",
    "pfam_acc",
    "pfam_name",
    "interpro_acc",
    "interpro_type",
    "env_from",
    "env_to",
    "bitscore",
    "evalue",
]
PROTEIN2IPR_COLUMNS = ["protein", "accession", "name", "signature", "start", "end"]
"""Columns of InterPro's protein2ipr.dat (no header line in the file)."""

_INTERPRO_ACC = r"IPR\d{6}"
_PFAM_ACC = r"PF\d{5}(?:\.\d+)?"
_SQ_LINE = re.compile(r"SQ   SEQUENCE\s+(\d+) AA;")

logger = logging.getLogger(__name__)


class FamilyFormatError(ValueError):
    """Malformed family-label input; the message names the file and the line."""


# -- helpers ------------------------------------------------------------------------------------


def _read_tsv(path: Path) -> pd.DataFrame:
    """Read a whole TSV with a header line (plain or gzip) as strings; missing fields become ""."""
    with open_text(path) as handle:
        try:
            # skip_blank_lines=False keeps row i on line i + 2, so errors can name the line.
            return pd.read_csv(
                handle, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
            )
        except pd.errors.EmptyDataError as err:
            raise FamilyFormatError(f"{path}, line 1: empty file") from err
        except pd.errors.ParserError as err:
            raise FamilyFormatError(f"{path}: {err}") from err


def _write_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``table`` as TSV with a header, atomically; gzip when ``path`` ends in .gz."""
    compression = "gzip" if str(path).endswith(".gz") else None
    with atomic_path(path) as tmp:
        # No quoting: InterPro names hold quotes and commas but never tabs or newlines.
        table.to_csv(tmp, sep="\t", index=False, compression=compression, quoting=csv.QUOTE_NONE)


def _require_columns(table: pd.DataFrame, columns: list[str], path: Path, what: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise FamilyFormatError(
            f"{path}, line 1: not a {what} header: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(map(str, table.columns))})"
        )


def _check_values(
    values: pd.Series,
    pattern: str,
    path: Path,
    first_line: int,
    what: str,
    allow_empty: bool = False,
) -> None:
    """Raise at the first value that does not match ``pattern``. The values' index holds each
    row's position in the file: the row indexed i is on line ``first_line + i``."""
    ok = values.str.fullmatch(pattern)
    if allow_empty:
        ok |= values == ""
    if not ok.all():
        position = int((~ok).to_numpy().argmax())
        raise FamilyFormatError(
            f"{path}, line {first_line + values.index[position]}: {what} {values.iloc[position]!r} "
            f"does not match {pattern}"
        )


def _check_members(values: pd.Series, allowed: Sequence[str], path: Path, first_line: int, what: str) -> None:
    """Raise at the first value not in ``allowed`` (lines as in `_check_values`)."""
    bad = ~values.isin(allowed)
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise FamilyFormatError(
            f"{path}, line {first_line + values.index[position]}: {what} {values.iloc[position]!r} is not one of "
            f"{', '.join(allowed)}"
        )


def _tidy(labels: pd.DataFrame) -> pd.DataFrame:
    """Label-table order: sorted by protein then accession, the first row of each pair kept."""
    labels = labels[LABEL_COLUMNS].sort_values(["protein", "accession"], kind="stable")
    return labels.drop_duplicates(["protein", "accession"]).reset_index(drop=True)


def _label_table(
    pairs: pd.DataFrame, entries: pd.DataFrame, source: str, prefer_entry_names: bool
) -> pd.DataFrame:
    """Label table from ``pairs`` (protein, accession, name[, type]) and the entries table.

    Type: from ``entries``; else the pair's own ``type`` when it has one; else ``unknown``.
    Name: the entries name and the pair's name, the preferred one first, the other when it is
    empty or missing.
    """
    known = entries[["accession", "type", "name"]].astype(str).rename(
        columns={"type": "entry_type", "name": "entry_name"}
    )
    pairs = pairs.astype(str).merge(known, on="accession", how="left", validate="many_to_one")
    entry_type = pairs["entry_type"]
    if "type" in pairs:
        entry_type = entry_type.fillna(pairs["type"].where(pairs["type"] != ""))
    entry_name = pairs["entry_name"].fillna("")
    first, second = (entry_name, pairs["name"]) if prefer_entry_names else (
        pairs["name"], entry_name
    )
    labels = pd.DataFrame(
        {
            "protein": pairs["protein"],
            "accession": pairs["accession"],
            "type": entry_type.fillna(UNKNOWN_TYPE),
            "name": first.where(first != "", second),
            "source": source,
        },
        columns=LABEL_COLUMNS,
    )
    return _tidy(labels)


# -- InterPro entries and the Pfam mapping ------------------------------------------------------


def read_interpro_entries(path: str | os.PathLike) -> pd.DataFrame:
    """InterPro entries as a DataFrame with columns ``accession``, ``type``, ``name``.

    Reads either the bundle's ``interpro_entries.tsv.gz`` (columns accession, type, short_name,
    name, pfam_members) or InterPro's published ``entry.list`` (header ``ENTRY_AC ENTRY_TYPE
    ENTRY_NAME``), plain or gzip. Checks accessions (IPR + 6 digits, no duplicates), types
    (`INTERPRO_TYPES`) and that every entry has a name.
    """
    path = Path(path)
    table = _read_tsv(path)
    if "ENTRY_AC" in table.columns:
        _require_columns(table, ["ENTRY_AC", "ENTRY_TYPE", "ENTRY_NAME"], path, "entry.list")
        table = table.rename(
            columns={"ENTRY_AC": "accession", "ENTRY_TYPE": "type", "ENTRY_NAME": "name"}
        )
    else:
        _require_columns(table, ["accession", "type", "name"], path, "InterPro entries")
    entries = table[["accession", "type", "name"]].reset_index(drop=True)
    _check_values(entries["accession"], _INTERPRO_ACC, path, 2, "InterPro accession")
    _check_members(entries["type"], INTERPRO_TYPES, path, 2, "entry type")
    unnamed = entries["name"] == ""
    if unnamed.any():
        row = int(unnamed.to_numpy().argmax())
        raise FamilyFormatError(
            f"{path}, line {row + 2}: entry {entries['accession'].iloc[row]} has no name"
        )
    repeated = entries["accession"].duplicated()
    if repeated.any():
        row = int(repeated.to_numpy().argmax())
        raise FamilyFormatError(
            f"{path}, line {row + 2}: entry {entries['accession'].iloc[row]} is listed twice"
        )
    return entries


def pfam_to_interpro(path: str | os.PathLike) -> dict[str, str]:
    """Map Pfam accession (no version, e.g. ``PF00042``) -> InterPro accession.

    Reads the bundle's entries table (its ``pfam_members`` column, ``PF00168:C2,PF13188:PAS_8``),
    a two-column TSV ``pfam_acc  interpro_acc`` with a header line, or InterPro's own
    ``interpro.xml(.gz)`` (the PFAM ``db_xref`` of each entry's ``member_list``); plain or gzip. A Pfam family
    is integrated into at most one InterPro entry, so a Pfam accession mapped twice is an error.
    """
    path = Path(path)
    if path.name.endswith((".xml", ".xml.gz")):
        return _pfam_to_interpro_xml(path)
    table = _read_tsv(path)
    if "pfam_members" in table.columns:
        _require_columns(table, ["accession", "pfam_members"], path, "InterPro entries")
        members = table["pfam_members"].str.split(",")
        pairs = pd.DataFrame({"interpro": table["accession"], "pfam": members}).explode("pfam")
        pairs = pairs[pairs["pfam"] != ""]
        pairs["pfam"] = pairs["pfam"].str.partition(":")[0]
    elif len(table.columns) == 2:
        pairs = pd.DataFrame({"pfam": table.iloc[:, 0], "interpro": table.iloc[:, 1]})
    else:
        raise FamilyFormatError(
            f"{path}, line 1: expected an InterPro entries table with a pfam_members column or a "
            f"two-column pfam_acc/interpro_acc table, found columns {', '.join(table.columns)}"
        )
    # The index still holds each row's position in the file (repeated after explode).
    _check_values(pairs["pfam"], _PFAM_ACC, path, 2, "Pfam accession")
    _check_values(pairs["interpro"], _INTERPRO_ACC, path, 2, "InterPro accession")
    pairs["pfam"] = pairs["pfam"].str.partition(".")[0]
    pairs = pairs.drop_duplicates()
    repeated = pairs["pfam"].duplicated()
    if repeated.any():
        bad = int(repeated.to_numpy().argmax())
        pfam = pairs["pfam"].iloc[bad]
        targets = sorted(pairs.loc[pairs["pfam"] == pfam, "interpro"])
        raise FamilyFormatError(
            f"{path}, line {pairs.index[bad] + 2}: Pfam {pfam} is mapped to more than one InterPro "
            f"entry ({', '.join(targets)})"
        )
    return dict(zip(pairs["pfam"], pairs["interpro"]))


def _pfam_to_interpro_xml(path: Path) -> dict[str, str]:
    """Pfam -> InterPro from InterPro's ``interpro.xml(.gz)``, streamed (the file is ~1 GB)."""
    import xml.etree.ElementTree as ElementTree

    mapping: dict[str, str] = {}
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for _, element in ElementTree.iterparse(handle, events=("end",)):
                if element.tag != "interpro":
                    continue
                entry = element.get("id", "")
                for xref in element.iterfind("member_list/db_xref"):
                    if xref.get("db") == "PFAM":
                        pfam = xref.get("dbkey", "").partition(".")[0]
                        if mapping.setdefault(pfam, entry) != entry:
                            raise FamilyFormatError(
                                f"{path}: Pfam {pfam} is a member of {mapping[pfam]} and {entry}")
                element.clear()
    except ElementTree.ParseError as err:
        raise FamilyFormatError(f"{path}, line {err.position[0]}: not valid InterPro XML ({err})") from None
    if not mapping:
        raise FamilyFormatError(f"{path}: no <interpro> entry with a PFAM member")
    return mapping


# -- Swiss-Prot flat file -----------------------------------------------------------------------


class SwissProtEntry(NamedTuple):
    """What the family stage needs from one Swiss-Prot flat-file entry.

    accession: primary accession (first accession of the first AC line).
    accessions: all accessions of the AC lines, primary first.
    sequence: residues of the SQ block, whitespace removed.
    interpro: ``(IPR accession, short name)`` per ``DR   InterPro;`` line, in file order.
    pfam: ``(Pfam accession, Pfam ID)`` per ``DR   Pfam;`` line, in file order.
    line: 1-based line of the entry's first line (its ID line).
    """

    accession: str
    accessions: tuple[str, ...]
    sequence: str
    interpro: tuple[tuple[str, str], ...]
    pfam: tuple[tuple[str, str], ...]
    line: int


def read_swissprot_dat(path: str | os.PathLike) -> Iterator[SwissProtEntry]:
    """Stream the entries of a Swiss-Prot flat file (``uniprot_sprot.dat``), plain or gzip.

    Raises `FamilyFormatError` naming the file and the line for: an entry without an AC line,
    an entry without an SQ line, a sequence whose length differs from the SQ line's ``N AA``,
    an ID line or an end of file before the previous entry's ``//``, a line other than sequence
    after the SQ line, a ``DR   InterPro;``/``DR   Pfam;`` line with too few fields, a corrupt
    gzip stream, and a file without entries.
    """
    path = Path(path)
    start: int | None = None
    accessions: list[str] = []
    interpro: list[tuple[str, str]] = []
    pfam: list[tuple[str, str]] = []
    parts: list[str] = []
    sq_line: int | None = None
    declared = 0
    n_entries = 0
    line_no = 0

    def finish(end_line: int) -> SwissProtEntry:
        if start is None:
            raise FamilyFormatError(f"{path}, line {end_line}: '//' without an entry before it")
        if not accessions:
            raise FamilyFormatError(
                f"{path}, line {start}: the entry on lines {start}-{end_line} has no AC line"
            )
        if sq_line is None:
            raise FamilyFormatError(
                f"{path}, line {start}: entry {accessions[0]} (lines {start}-{end_line}) "
                f"has no SQ line"
            )
        sequence = "".join(parts)
        if len(sequence) != declared:
            raise FamilyFormatError(
                f"{path}, line {sq_line}: entry {accessions[0]}: the SQ line declares {declared} "
                f"residues but the sequence has {len(sequence)}"
            )
        return SwissProtEntry(
            accessions[0], tuple(accessions), sequence, tuple(interpro), tuple(pfam), start
        )

    def cross_reference(text: str, line: int) -> tuple[str, str]:
        fields = [field.strip() for field in text[5:].rstrip().rstrip(".").split(";")]
        if len(fields) < 3 or not fields[1]:
            raise FamilyFormatError(f"{path}, line {line}: malformed DR line {text.rstrip()!r}")
        return fields[1], fields[2]

    try:
        with open_text(path) as handle:
            for line_no, text in enumerate(handle, start=1):
                code = text[:2]
                if code == "//":
                    yield finish(line_no)
                    n_entries += 1
                    start, sq_line, declared = None, None, 0
                    accessions, interpro, pfam, parts = [], [], [], []
                    continue
                if not text.strip():
                    continue
                if start is None:
                    start = line_no
                elif code == "ID":
                    raise FamilyFormatError(
                        f"{path}, line {line_no}: ID line before the '//' that ends the entry "
                        f"starting at line {start}"
                    )
                if sq_line is not None:
                    if not text.startswith("     "):
                        raise FamilyFormatError(
                            f"{path}, line {line_no}: expected sequence or '//' after the SQ "
                            f"line {sq_line}, found {text.rstrip()[:40]!r}"
                        )
                    parts.append("".join(text.split()))
                elif code == "AC":
                    accessions.extend(a.strip() for a in text[5:].split(";") if a.strip())
                elif text.startswith("DR   InterPro;"):
                    interpro.append(cross_reference(text, line_no))
                elif text.startswith("DR   Pfam;"):
                    pfam.append(cross_reference(text, line_no))
                elif code == "SQ":
                    match = _SQ_LINE.match(text)
                    if match is None:
                        raise FamilyFormatError(
                            f"{path}, line {line_no}: malformed SQ line {text.rstrip()!r}"
                        )
                    sq_line, declared = line_no, int(match.group(1))
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise FamilyFormatError(f"{path}, after line {line_no}: cannot read: {err}") from err
    if start is not None:
        raise FamilyFormatError(
            f"{path}, line {line_no}: the file ends inside the entry starting at line {start} "
            f"(no '//')"
        )
    if n_entries == 0:
        raise FamilyFormatError(f"{path}, line {line_no}: no Swiss-Prot entries")


def dat_to_fasta(dat_path: str | os.PathLike, fasta_path: str | os.PathLike) -> int:
    """Write the sequences of a Swiss-Prot flat file as FASTA (``>sp|ACCESSION``), atomically.

    Returns the number of records written (one per entry, in file order).
    """
    count = 0

    def records() -> Iterator[FastaRecord]:
        nonlocal count
        for entry in read_swissprot_dat(dat_path):
            count += 1
            yield FastaRecord(f"sp|{entry.accession}", "", entry.sequence, entry.line)

    write_fasta(records(), fasta_path)
    return count


# -- label sources ------------------------------------------------------------------------------


def labels_from_swissprot_dat(
    path: str | os.PathLike, entries: pd.DataFrame, pfam2ipr: dict[str, str] | None = None
) -> pd.DataFrame:
    """Label table (source ``swissprot_dat``) from the DR lines of a Swiss-Prot flat file.

    entries: `read_interpro_entries` table, for types and names; a ``DR   InterPro;`` accession
        it does not know gets type ``unknown`` and the DR line's short name as its name.
    pfam2ipr: `pfam_to_interpro` map. A protein without ``DR   InterPro;`` lines takes its
        ``DR   Pfam;`` accessions mapped through it (METHODS 5: "where no InterPro annotation
        exists, Pfam hits mapped to InterPro"); Pfam accessions it does not map are dropped and
        counted in the log. Without it such proteins get no label.
    """
    rows: list[tuple[str, str, str]] = []
    n_pfam_proteins = n_unmapped = 0
    for entry in read_swissprot_dat(path):
        if entry.interpro:
            rows.extend((entry.accession, ipr, short) for ipr, short in entry.interpro)
        elif entry.pfam and pfam2ipr is not None:
            n_pfam_proteins += 1
            for pfam_acc, pfam_name in entry.pfam:
                ipr = pfam2ipr.get(pfam_acc)
                if ipr is None:
                    n_unmapped += 1
                else:
                    rows.append((entry.accession, ipr, pfam_name))
    if pfam2ipr is not None:
        logger.info(
            "%s: %d proteins without InterPro DR lines took Pfam DR lines; %d Pfam accessions "
            "had no InterPro entry and were dropped", path, n_pfam_proteins, n_unmapped,
        )
    pairs = pd.DataFrame(rows, columns=["protein", "accession", "name"], dtype=str)
    return _label_table(pairs, entries, "swissprot_dat", prefer_entry_names=True)


def labels_from_protein2ipr(
    path: str | os.PathLike,
    entries: pd.DataFrame,
    proteins: set[str] | None = None,
    chunksize: int = 1_000_000,
) -> pd.DataFrame:
    """Label table (source ``protein2ipr``) from InterPro's ``protein2ipr.dat[.gz]``.

    The file has no header; its tab-separated columns are `PROTEIN2IPR_COLUMNS` (UniProt
    accession, IPR accession, IPR name, member-database signature, start, end), one row per
    signature match. It is read in chunks of ``chunksize`` lines, keeping only ``proteins`` when
    given, so memory follows the kept labels, not the ~100 GB file. Names come from the file,
    types from ``entries`` (``unknown`` for accessions it does not know).
    """
    path = Path(path)
    kept: list[pd.DataFrame] = []
    lines_read = 0
    with open_text(path) as handle:
        reader = pd.read_csv(
            handle, sep="\t", header=None, names=PROTEIN2IPR_COLUMNS,
            usecols=["protein", "accession", "name"], dtype=str, keep_default_na=False,
            quoting=csv.QUOTE_NONE, skip_blank_lines=False, chunksize=chunksize,
        )
        try:
            for chunk in reader:
                # The reader numbers rows across chunks, so the index is the row in the file.
                _check_values(chunk["accession"], _INTERPRO_ACC, path, 1, "InterPro accession")
                empty = chunk["protein"] == ""
                if empty.any():
                    line = lines_read + 1 + int(empty.to_numpy().argmax())
                    raise FamilyFormatError(f"{path}, line {line}: empty protein accession")
                lines_read += len(chunk)
                if proteins is not None:
                    chunk = chunk[chunk["protein"].isin(proteins)]
                # One row per match region; dropping repeats per chunk keeps memory small.
                kept.append(chunk.drop_duplicates(["protein", "accession"]))
        except pd.errors.ParserError as err:
            raise FamilyFormatError(f"{path}: {err}") from err
    pairs = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(
        columns=["protein", "accession", "name"], dtype=str
    )
    logger.info("%s: %d lines read, %d labels kept", path, lines_read, len(pairs))
    return _label_table(pairs, entries, "protein2ipr", prefer_entry_names=False)


def read_pfam_hits(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Pfam hit table (`PFAM_HIT_COLUMNS`, plain or gzip): ids as strings, envelope as
    int64, bitscore and evalue as float64."""
    path = Path(path)
    hits = _read_tsv(path)
    _require_columns(hits, PFAM_HIT_COLUMNS, path, "Pfam hit table")
    hits = hits[PFAM_HIT_COLUMNS]
    _check_values(hits["pfam_acc"], r"PF\d{5}", path, 2, "Pfam accession")
    _check_values(hits["interpro_acc"], _INTERPRO_ACC, path, 2, "InterPro accession", True)
    empty = hits["accession"] == ""
    if empty.any():
        raise FamilyFormatError(
            f"{path}, line {int(empty.to_numpy().argmax()) + 2}: empty protein accession"
        )
    for column in ("env_from", "env_to", "bitscore", "evalue"):
        numbers = pd.to_numeric(hits[column], errors="coerce")
        if numbers.isna().any():
            row = int(numbers.isna().to_numpy().argmax())
            raise FamilyFormatError(
                f"{path}, line {row + 2}: {column} {hits[column].iloc[row]!r} is not a number"
            )
        hits[column] = numbers
    return hits.astype({"env_from": "int64", "env_to": "int64", "bitscore": "float64",
                        "evalue": "float64"})


def write_pfam_hits(hits: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a Pfam hit table as TSV with a header (gzip when ``path`` ends in .gz), atomically;
    numbers as in the bundle: bitscore to 0.1 bit, E-value to 3 significant digits."""
    table = hits[PFAM_HIT_COLUMNS].copy()
    table["bitscore"] = table["bitscore"].map("{:.1f}".format)
    table["evalue"] = table["evalue"].map("{:.3g}".format)
    _write_tsv(table, path)


def labels_from_pfam_hits(
    path: str | os.PathLike, pfam2ipr: dict[str, str], entries: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """Label table (source ``pfam_hits``) from a Pfam hit table, and the number of hits dropped.

    Each hit's InterPro entry is the table's ``interpro_acc`` where present, else
    ``pfam2ipr[pfam_acc]``; hits with neither are dropped and counted (also logged). Types and
    names come from ``entries``; for accessions it does not know, the table's ``interpro_type``
    (else ``unknown``) and the Pfam ID.
    """
    hits = read_pfam_hits(path)
    interpro = hits["interpro_acc"].where(
        hits["interpro_acc"] != "", hits["pfam_acc"].map(pfam2ipr)
    ).fillna("")
    mapped = interpro != ""
    n_dropped = int((~mapped).sum())
    logger.info("%s: %d of %d Pfam hits have no InterPro entry and were dropped",
                path, n_dropped, len(hits))
    same_entry = interpro == hits["interpro_acc"]
    pairs = pd.DataFrame(
        {
            "protein": hits["accession"],
            "accession": interpro,
            "name": hits["pfam_name"],
            "type": hits["interpro_type"].where(same_entry, ""),
        }
    )[mapped]
    return _label_table(pairs, entries, "pfam_hits", prefer_entry_names=True), n_dropped


# -- Pfam search --------------------------------------------------------------------------------


def run_hmmsearch(
    hmm_path: str | os.PathLike,
    fasta_path: str | os.PathLike,
    threads: int = 1,
    pfam2ipr: dict[str, str] | None = None,
    entries: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pfam hit table (`PFAM_HIT_COLUMNS`) of ``fasta_path`` against the HMMs of ``hmm_path``.

    Runs pyhmmer's ``hmmsearch`` with the gathering (GA) cutoffs, as Pfam's own annotation does
    (Pfam-A.hmm for real runs; the database size Z is the number of sequences in the FASTA file).
    Rows are the included domains of included hits, sorted by protein, env_from, env_to, pfam_acc.
    ``accession`` is `uniprot_accession` of the FASTA ID; ``pfam_acc`` is the HMM accession without
    its version. ``interpro_acc`` is filled from ``pfam2ipr`` and ``interpro_type`` from ``entries``
    when given, else left empty. Raises ValueError naming the HMM when it has no accession or no
    GA cutoffs, and naming the FASTA line when two records share an accession.
    """
    # Imported here so that reading label tables does not need HMMER's compiled extension.
    import pyhmmer

    hmm_path, fasta_path = Path(hmm_path), Path(fasta_path)
    alphabet = pyhmmer.easel.Alphabet.amino()
    sequences = []
    first_line: dict[str, int] = {}
    for record in read_fasta(fasta_path):
        accession = uniprot_accession(record.seq_id)
        if accession in first_line:
            raise FamilyFormatError(
                f"{fasta_path}, line {record.line}: accession {accession} repeats the record "
                f"at line {first_line[accession]}"
            )
        first_line[accession] = record.line
        text = pyhmmer.easel.TextSequence(name=accession, sequence=record.sequence)
        sequences.append(text.digitize(alphabet))
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, sequences)

    def checked_hmms(hmm_file) -> Iterator:
        for hmm in hmm_file:
            if not hmm.accession:
                raise ValueError(f"{hmm_path}: HMM {hmm.name} has no accession (ACC line)")
            if not hmm.cutoffs.gathering_available():
                raise ValueError(
                    f"{hmm_path}: HMM {hmm.name} ({hmm.accession}) has no gathering cutoffs "
                    f"(GA line); Pfam-A HMMs have them"
                )
            yield hmm

    rows = []
    with pyhmmer.plan7.HMMFile(hmm_path) as hmm_file:
        for top_hits in pyhmmer.hmmsearch(
            checked_hmms(hmm_file), block, cpus=threads, bit_cutoffs="gathering"
        ):
            pfam_acc = top_hits.query.accession.partition(".")[0]
            for hit in top_hits.included:
                rows.extend(
                    (hit.name, pfam_acc, top_hits.query.name, domain.env_from, domain.env_to,
                     domain.score, domain.i_evalue)
                    for domain in hit.domains.included
                )
    hits = pd.DataFrame(
        rows,
        columns=["accession", "pfam_acc", "pfam_name", "env_from", "env_to", "bitscore", "evalue"],
    ).astype({"accession": str, "pfam_acc": str, "pfam_name": str, "env_from": "int64",
              "env_to": "int64", "bitscore": "float64", "evalue": "float64"})
    pfam2ipr = pfam2ipr or {}
    types = dict(zip(entries["accession"], entries["type"])) if entries is not None else {}
    hits["interpro_acc"] = hits["pfam_acc"].map(lambda acc: pfam2ipr.get(acc, "")).astype(str)
    hits["interpro_type"] = hits["interpro_acc"].map(lambda acc: types.get(acc, "")).astype(str)
    hits = hits.sort_values(["accession", "env_from", "env_to", "pfam_acc"], kind="stable")
    return hits[PFAM_HIT_COLUMNS].reset_index(drop=True)


# -- combining, filtering, files ----------------------------------------------------------------


def combine_labels(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Merge label tables given in priority order (first = most trusted).

    A protein takes all its labels from the first table that has any label for it; the other
    tables' labels for that protein are ignored, so sources are never mixed within one protein.
    """
    ranked = [table[LABEL_COLUMNS].assign(_rank=rank) for rank, table in enumerate(tables)]
    if not ranked:
        return pd.DataFrame(columns=LABEL_COLUMNS, dtype=str)
    labels = pd.concat(ranked, ignore_index=True)
    best = labels.groupby("protein")["_rank"].transform("min")
    return _tidy(labels[labels["_rank"] == best])


def filter_types(labels: pd.DataFrame, types: list[str] | None) -> pd.DataFrame:
    """Keep the labels whose ``type`` is in ``types`` (e.g. ``["Family"]``); None keeps all.

    A type that is neither an InterPro type nor ``unknown`` is an error (a config typo would
    otherwise silently give an empty table).
    """
    if types is None:
        return labels.reset_index(drop=True)
    invalid = sorted(set(types) - set(INTERPRO_TYPES) - {UNKNOWN_TYPE})
    if invalid:
        raise ValueError(
            f"unknown InterPro type(s) {', '.join(invalid)}; valid: "
            f"{', '.join(INTERPRO_TYPES)}, {UNKNOWN_TYPE}"
        )
    return labels[labels["type"].isin(types)].reset_index(drop=True)


def label_proteins(
    sources: list[dict],
    entries_path: str | os.PathLike,
    fasta: str | os.PathLike,
    pfam2interpro_path: str | os.PathLike | None = None,
    threads: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """The label table of the proteins of ``fasta`` (their UniProt accessions) from the config's
    ``families.sources``, in priority order.

    sources: dicts with ``kind`` (``swissprot_dat``, ``protein2ipr``, ``pfam_hits`` or
    ``pfam_hmm``) and ``path``. ``pfam_hmm`` runs `run_hmmsearch` over the proteins no earlier
    source labelled (a Pfam-A search is the expensive one). ``pfam2interpro_path`` defaults to the
    entries table's ``pfam_members``. Returns the combined labels (every entry type; filter later)
    and per-source counts.
    """
    proteins = {uniprot_accession(record.seq_id) for record in read_fasta(fasta)}
    entries = read_interpro_entries(entries_path)
    pfam2ipr = pfam_to_interpro(pfam2interpro_path or entries_path)
    tables, stats = [], {"proteins": len(proteins), "sources": []}
    for source in sources:
        kind, path = source["kind"], source["path"]
        dropped = 0
        if kind == "swissprot_dat":
            table = labels_from_swissprot_dat(path, entries, pfam2ipr)
        elif kind == "protein2ipr":
            table = labels_from_protein2ipr(path, entries, proteins)
        elif kind == "pfam_hits":
            table, dropped = labels_from_pfam_hits(path, pfam2ipr, entries)
        elif kind == "pfam_hmm":
            labelled = set().union(*(set(t["protein"]) for t in tables)) if tables else set()
            table, dropped = _labels_from_hmmsearch(path, fasta, proteins - labelled, pfam2ipr, entries, threads)
        else:
            raise ValueError(f"families.sources: unknown kind {kind!r}")
        table = table[table["protein"].isin(proteins)]
        tables.append(table)
        stats["sources"].append({"kind": kind, "path": str(path), "proteins_labelled": int(table["protein"].nunique()),
                                 "labels": len(table), "hits_without_interpro": dropped})
    labels = combine_labels(tables)
    per_type = labels.groupby("type")
    stats["proteins_labelled"] = int(labels["protein"].nunique())
    stats["by_type"] = {
        kind: {"proteins": int(group["protein"].nunique()), "entries": int(group["accession"].nunique())}
        for kind, group in per_type
    }
    return labels, stats


def _labels_from_hmmsearch(hmm_path, fasta, proteins: set[str], pfam2ipr, entries, threads) -> tuple[pd.DataFrame, int]:
    """Pfam labels (source ``pfam_hits``) of the records of ``fasta`` in ``proteins``, from a fresh
    hmmsearch at the gathering cutoffs."""
    with tempfile.TemporaryDirectory(prefix="protsae-hmmsearch-") as workdir:
        subset = Path(workdir) / "proteins.fasta"
        write_fasta((r for r in read_fasta(fasta) if uniprot_accession(r.seq_id) in proteins), subset)
        hits_path = Path(workdir) / "hits.tsv"
        write_pfam_hits(run_hmmsearch(hmm_path, subset, threads, pfam2ipr, entries), hits_path)
        return labels_from_pfam_hits(hits_path, pfam2ipr, entries)


def write_labels(labels: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a label table as TSV with a header (gzip when ``path`` ends in .gz), atomically."""
    _write_tsv(labels[LABEL_COLUMNS], path)


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read a label table written by `write_labels`; checks the columns and the source names."""
    path = Path(path)
    labels = _read_tsv(path)
    _require_columns(labels, LABEL_COLUMNS, path, "label table")
    labels = labels[LABEL_COLUMNS]
    _check_values(labels["accession"], _INTERPRO_ACC, path, 2, "InterPro accession")
    _check_members(labels["source"], SOURCES, path, 2, "source")
    return labels
