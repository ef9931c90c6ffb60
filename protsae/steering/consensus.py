"""The family consensus a steered latent is judged against (METHODS.md section 8): each of the
latent's top sequences searched with ``blastp`` (BLAST+) against the evaluation set's proteins,
the hits that carry the latent's family kept, and the top sequences plus those hits aligned with
Clustal Omega. Per alignment column: the consensus residue (the most common non-gap letter; ties
go to the letter that sorts first), Clustal's conservation symbol (``*`` identical, ``:``
strongly similar, ``.`` weakly similar, space none), the share of non-gap rows equal to the
consensus, and the occupancy (non-gap rows / rows).

Full-length sequences are aligned (InterProt kept only each hit's HSP segment).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from protsae.sequences.fasta import FastaRecord, write_fasta

log = logging.getLogger("protsae.steering")

GAP = "-"
CONSERVATION_CLASSES = {"*": "identical", ":": "strong", ".": "weak", " ": "none"}
"""Clustal Omega's conservation symbols and the class names the tables use."""

_INSTALL = {
    "blastp": "`apt-get install ncbi-blast+`, or `conda env create -f envs/blast.yaml`",
    "makeblastdb": "`apt-get install ncbi-blast+`, or `conda env create -f envs/blast.yaml`",
    "clustalo": "`apt-get install clustalo`, or `conda env create -f envs/clustalo.yaml`",
}


def require_tool(name: str) -> str:
    """The path of a command-line tool, or a RuntimeError that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: install it ({_INSTALL[name]}, or run snakemake "
                           "with --software-deployment-method conda)")
    return path


def _run(command: list[str]) -> str:
    log.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def make_blast_db(fasta: str | os.PathLike, prefix: str | os.PathLike) -> None:
    """A protein BLAST database of ``fasta`` at ``prefix`` (its files are ``prefix.p*``)."""
    require_tool("makeblastdb")
    _run(["makeblastdb", "-in", str(fasta), "-dbtype", "prot", "-out", str(prefix)])


def blast_hits(queries: Sequence[FastaRecord], db: str | os.PathLike, max_target_seqs: int = 100,
               evalue: float = 1e-3, threads: int = 1) -> pd.DataFrame:
    """``blastp`` of ``queries`` against ``db``: one row per (query, subject), its best HSP
    (query, hit, evalue, bitscore, pident), best first within each query."""
    require_tool("blastp")
    columns = ["query", "hit", "evalue", "bitscore", "pident"]
    with tempfile.TemporaryDirectory(prefix="protsae-blast-") as workdir:
        query_fasta = Path(workdir) / "queries.fasta"
        write_fasta(queries, query_fasta)
        out = _run(["blastp", "-query", str(query_fasta), "-db", str(db), "-outfmt", "6 " + " ".join(
            ["qseqid", "sseqid", "evalue", "bitscore", "pident"]), "-max_target_seqs", str(max_target_seqs),
            "-evalue", str(evalue), "-num_threads", str(threads)])
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    hits = pd.DataFrame(rows, columns=columns).astype({"evalue": float, "bitscore": float, "pident": float})
    hits = hits.sort_values(["query", "bitscore", "hit"], ascending=[True, False, True], kind="stable")
    return hits.drop_duplicates(["query", "hit"]).reset_index(drop=True)


@dataclass
class Alignment:
    """A multiple alignment: rows by sequence id (equal lengths, ``-`` for gaps) and Clustal's
    conservation symbol of every column."""

    rows: dict[str, str]
    symbols: str

    def columns(self) -> pd.DataFrame:
        """Per column: column, consensus, symbol, conservation (class name), consensus_share,
        occupancy."""
        records = []
        n_rows = len(self.rows)
        for column, letters in enumerate(zip(*self.rows.values())):
            residues = [letter for letter in letters if letter != GAP]
            counts = Counter(residues)
            consensus = min(counts, key=lambda letter: (-counts[letter], letter)) if counts else GAP
            symbol = self.symbols[column]
            records.append({
                "column": column,
                "consensus": consensus,
                "symbol": symbol,
                "conservation": CONSERVATION_CLASSES[symbol],
                "consensus_share": counts[consensus] / len(residues) if residues else 0.0,
                "occupancy": len(residues) / n_rows,
            })
        return pd.DataFrame(records)

    def residue_columns(self, seq_id: str) -> list[int]:
        """The alignment column of each residue of one row's sequence."""
        return [column for column, letter in enumerate(self.rows[seq_id]) if letter != GAP]


def run_clustalo(records: Sequence[FastaRecord], threads: int = 1) -> Alignment:
    """Clustal Omega over ``records`` (at least two), run once: the rows and the conservation
    symbols from its Clustal output, each row checked to be its input sequence with gaps added."""
    if len(records) < 2:
        raise ValueError(f"an alignment needs at least two sequences, got {len(records)}")
    require_tool("clustalo")
    with tempfile.TemporaryDirectory(prefix="protsae-clustalo-") as workdir:
        infile = Path(workdir) / "in.fasta"
        write_fasta(records, infile)
        clustal = _run(["clustalo", "-i", str(infile), "--wrap=1000000", "--threads", str(threads), "--force",
                        "--outfmt=clu"])
    rows, symbols = _parse_clustal(clustal)
    _check_rows(rows, records)
    return Alignment(rows, symbols)


def _check_rows(rows: dict[str, str], records: Sequence[FastaRecord]) -> None:
    """Every input aligned once, under its own ID, as its own sequence: a RuntimeError otherwise
    (Clustal names are whitespace-delimited, so an ID clustalo changed would misplace a row)."""
    expected = {record.seq_id: record.sequence for record in records}
    if set(rows) != set(expected):
        unknown = sorted(set(rows) ^ set(expected))
        raise RuntimeError(f"clustalo's alignment rows do not match its input IDs (differ: {unknown[:5]})")
    for seq_id, row in rows.items():
        if row.replace(GAP, "") != expected[seq_id]:
            raise RuntimeError(f"clustalo's row {seq_id} is not its input sequence with gaps added")


def _parse_clustal(text: str) -> tuple[dict[str, str], str]:
    """Rows and the conservation line of a one-block Clustal file (``--wrap`` wider than it)."""
    lines = [line for line in text.splitlines()[1:] if line.strip() or line.startswith(" ")]
    rows: dict[str, str] = {}
    offset = width = None
    symbols = ""
    for line in lines:
        if not line.startswith(" "):
            name, sequence = line.split()[:2]
            if name in rows:
                raise RuntimeError("clustalo wrapped its Clustal output into blocks")
            rows[name] = sequence
            offset, width = line.find(sequence, len(name)), len(sequence)
        elif rows:
            symbols = line[offset:]
    if width is None:
        raise RuntimeError("clustalo wrote no alignment")
    return rows, symbols.ljust(width)[:width]
