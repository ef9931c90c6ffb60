"""Probe tasks' data (METHODS.md section 7, paper Table 1): one loader per published format, and
the train/valid/test splits.

Every loader returns a *task table*, a DataFrame with one row per protein (chain):

    id        str, unique; the FASTA ID the sequences are written under (no whitespace)
    sequence  str, upper-case residue letters
    label     protein-level tasks: a class name (str) or a value (float, e.g. melting temperature
              in °C); residue-level secondary structure: a str of the sequence's length, one of
              ``H`` (helix), ``E`` (strand), ``C`` (other) per residue, or ``-`` for a residue
              without a label, which the probes ignore
    split     ``train``, ``valid``, ``test``, or ``""`` where the source publishes no split

and sometimes ``subset`` (the published file a row came from, e.g. TAPE's ``cb513``) and
``note`` (a caveat carried with the labels). `assign_splits` adds ``cluster``.

Published formats read here:

* ``dssp_bundle``: the data bundle's ``dssp_chains.tsv.gz`` (TSV, columns ``pdb_id chain
  sequence dssp8 ss3``), PDB chains with DSSP 3-state labels; no published split.
* ``structure_bundle``: the bundle's ``structures_backbone.npz``, 3,000 of those chains with
  backbone coordinates (the latent browser draws them); labels from its ``dssp8`` arrays.
* ``tape_ss``: TAPE's secondary-structure JSON files (``secondary_structure_{train,valid,casp12,
  ts115,cb513}.json``), each a list of records with ``id``, ``primary`` (sequence), ``ss3``
  (0/1/2 = H/E/C per residue) and ``valid_mask`` (per-residue bools), among other keys.
* ``localization_bundle``: the bundle's ``swissprot_subset.localization.tsv.gz`` (``accession
  location``), sequences from the bundle's FASTA files (``>sp|ACCESSION``); GO-derived, see
  `LOCALIZATION_NOTE`; no published split.
* ``deeploc``: DeepLoc 1.0's ``deeploc_data.fasta``, headers ``>ACCESSION Location-M|S|U [test]``.
* ``flip_meltome``: FLIP's meltome split CSVs (``sequence,target,set,validation``).
* ``cho_table``: a CSV/TSV of sequences and binary CHO expression labels (Mason et al. 2022);
  the published table is not available offline, so its column names are options.

Splits: a published split is kept as it is; a missing validation split is carved out of the
training rows by sequence cluster; a task with no published split is split by cluster
(`homology_split`), so that no MMseqs2 cluster has members on two sides.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from protsae.files import atomic_path
from protsae.latents.evalset import ClusterParams, run_mmseqs_cluster
from protsae.sequences.fasta import (
    FastaRecord,
    open_text,
    read_fasta,
    uniprot_accession,
    write_fasta,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
TASK_COLUMNS = ("id", "sequence", "label", "split")
OPTIONAL_COLUMNS = ("subset", "note")
"""Extra columns that `write_task` carries into the labels TSV when a table has them."""

SS3_CLASSES = "HEC"
UNLABELLED_RESIDUE = "-"
RESIDUE_LEVEL_FORMATS = frozenset({"dssp_bundle", "structure_bundle", "tape_ss"})

TAPE_SS3 = {0: "H", 1: "E", 2: "C"}
"""TAPE's ``ss3`` integers (helix, strand, other) as letters."""
TAPE_SUBSETS = {"train": "train", "valid": "valid", "casp12": "test", "ts115": "test", "cb513": "test"}
"""TAPE's secondary-structure files (by name) and the split each one is."""
TAPE_KEYS = ("id", "primary", "protein_length", "ss3", "valid_mask")
"""The keys of a TAPE record that are read; the others (ss8, phi, psi, rsa, ...) are ignored."""

DEEPLOC_LOCATIONS = (
    "Nucleus", "Cytoplasm", "Extracellular", "Mitochondrion", "Cell.membrane",
    "Endoplasmic.reticulum", "Plastid", "Golgi.apparatus", "Lysosome/Vacuole", "Peroxisome",
)
DEEPLOC_MEMBRANE = ("M", "S", "U")
"""DeepLoc's membrane-bound / soluble / unknown suffix of the location."""

LOCALIZATION_NOTE = (
    "GO-derived stand-in for DeepLoc: one class per protein from Swiss-Prot 2014 GO "
    "cellular-component annotations of unknown evidence, prokaryotes included"
)

FLIP_SETS = ("train", "test")
CHO_CLASSES = ("expressed", "not_expressed")
CHO_POSITIVE = ("1", "true", "yes", "expressed")
CHO_NEGATIVE = ("0", "false", "no", "not_expressed")


# -- loaders ------------------------------------------------------------------------------------


def _read_table(path: str | os.PathLike, required: Sequence[str], sep: str) -> pd.DataFrame:
    """A delimited file (plain or gzip) as strings, ``""`` for empty cells; raises ValueError
    naming the missing columns. Row ``i`` is line ``i + 2`` of the file (one header line)."""
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"{path}, line 1: missing column(s) {', '.join(missing)} "
                         f"(found {', '.join(map(str, table.columns))})")
    return table


def _ss3_error(sequence: str, ss3: str) -> str | None:
    """What is wrong with a residue-level label string, or None."""
    if len(ss3) != len(sequence):
        return f"{len(ss3)} secondary-structure labels for {len(sequence)} residues"
    unknown = set(ss3) - set(SS3_CLASSES + UNLABELLED_RESIDUE)
    if unknown:
        return f"secondary-structure label(s) {', '.join(sorted(unknown))} not in {SS3_CLASSES}"
    return None


def load_dssp_bundle(path: str | os.PathLike) -> pd.DataFrame:
    """PDB chains with DSSP 3-state secondary structure from the bundle's ``dssp_chains.tsv.gz``.

    id ``<pdb_id>_<chain>``, label the ``ss3`` string (H/E/C, one per residue), split ``""`` (the
    bundle publishes none). A sequence found in several chains (ten sequences in the bundle, 13
    chains dropped) is kept once, at its first chain, so that no sequence can land on two sides
    of a split; the number dropped is logged.
    """
    rows = _read_table(path, ("pdb_id", "chain", "sequence", "ss3"), sep="\t")
    for index, (pdb_id, chain, sequence, ss3) in enumerate(
            zip(rows["pdb_id"], rows["chain"], rows["sequence"], rows["ss3"])):
        where = f"{path}, line {index + 2} ({pdb_id}_{chain})"
        if not pdb_id or not chain:
            raise ValueError(f"{where}: empty pdb_id or chain")
        if not sequence:
            raise ValueError(f"{where}: empty sequence")
        problem = _ss3_error(sequence, ss3)
        if problem:
            raise ValueError(f"{where}: {problem}")
    table = pd.DataFrame({
        "id": rows["pdb_id"] + "_" + rows["chain"],
        "sequence": rows["sequence"],
        "label": rows["ss3"],
        "split": "",
    })
    repeated = table["sequence"].duplicated()
    log.info("%s: %d chains, %d dropped as repeats of an earlier chain's sequence",
             path, len(table), int(repeated.sum()))
    return table[~repeated].reset_index(drop=True)


DSSP8_TO_SS3 = str.maketrans("HGIEBTSC", "HHHEECCC")


def load_structure_bundle(path: str | os.PathLike) -> pd.DataFrame:
    """The PDB chains of the bundle's ``structures_backbone.npz``, labelled like `load_dssp_bundle`
    (ss3 from the 8 DSSP states: H, G, I -> H; E, B -> E; T, S, C -> C), so that every chain of
    the task has a structure for the latent browser. Repeated sequences are kept once."""
    with np.load(path) as data:
        missing = {"pdb_id", "chain", "sequence", "dssp8"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a structure bundle, lacks array(s) {', '.join(sorted(missing))}")
        ids = [f"{p}_{c}" for p, c in zip(data["pdb_id"].tolist(), data["chain"].tolist())]
        sequences, dssp8 = data["sequence"].tolist(), data["dssp8"].tolist()
    labels = []
    for seq_id, sequence, states in zip(ids, sequences, dssp8):
        unknown = set(states) - set("HGIEBTSC")
        if len(states) != len(sequence) or unknown:
            raise ValueError(f"{path}, chain {seq_id}: {len(states)} DSSP states {sorted(unknown) or ''} "
                             f"for {len(sequence)} residues")
        labels.append(states.translate(DSSP8_TO_SS3))
    table = pd.DataFrame({"id": ids, "sequence": sequences, "label": labels, "split": ""})
    repeated = table["sequence"].duplicated()
    log.info("%s: %d chains, %d dropped as repeats of an earlier chain's sequence", path, len(table), int(repeated.sum()))
    return table[~repeated].reset_index(drop=True)


def _tape_record(record: object, where: str) -> tuple[str, str, str]:
    """(id, sequence, label) of one TAPE secondary-structure record; ValueError on a bad one."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object")
    missing = [key for key in TAPE_KEYS if key not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    sequence, ss3, mask = record["primary"], record["ss3"], record["valid_mask"]
    if not isinstance(sequence, str) or not sequence:
        raise ValueError(f"{where}: 'primary' is not a non-empty sequence string")
    if record["protein_length"] != len(sequence):
        raise ValueError(f"{where}: protein_length {record['protein_length']} but "
                         f"{len(sequence)} residues")
    if not isinstance(ss3, list) or len(ss3) != len(sequence):
        raise ValueError(f"{where}: 'ss3' is not a list of {len(sequence)} classes")
    if not isinstance(mask, list) or len(mask) != len(sequence):
        raise ValueError(f"{where}: 'valid_mask' is not a list of {len(sequence)} bools")
    bad = next((value for value in ss3 if value not in TAPE_SS3), None)
    if bad is not None:
        raise ValueError(f"{where}: ss3 class {bad!r} is not one of 0, 1, 2 (helix, strand, other)")
    label = "".join(TAPE_SS3[value] if valid else UNLABELLED_RESIDUE for value, valid in zip(ss3, mask))
    return str(record["id"]), sequence, label


def load_tape_ss(paths: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """TAPE's secondary-structure set from its published JSON files.

    paths: file name -> path, names from `TAPE_SUBSETS` (``train``, ``valid``, ``casp12``,
        ``ts115``, ``cb513``); the three test sets become split ``test`` and every row keeps the
        name in ``subset``.
    label: ``ss3`` as H/E/C letters, ``-`` where ``valid_mask`` is false (residues without
        coordinates), which the probes ignore.
    """
    unknown = sorted(set(paths) - set(TAPE_SUBSETS))
    if unknown:
        raise ValueError(f"TAPE secondary-structure file name(s) {', '.join(unknown)} not in "
                         f"{', '.join(TAPE_SUBSETS)}")
    frames = []
    for subset, path in paths.items():
        with open_text(Path(path)) as handle:
            try:
                records = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        rows = [_tape_record(record, f"{path}, record {index}") for index, record in enumerate(records)]
        frame = pd.DataFrame(rows, columns=["id", "sequence", "label"])
        frames.append(frame.assign(split=TAPE_SUBSETS[subset], subset=subset))
    if not frames:
        raise ValueError("no TAPE secondary-structure file given")
    return pd.concat(frames, ignore_index=True)


def load_localization_bundle(labels_path: str | os.PathLike,
                             fasta_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The bundle's GO-derived localisation classes (``swissprot_subset.localization.tsv.gz``).

    Sequences are looked up by accession in ``fasta_paths`` (the bundle's
    ``swissprot_subset.fasta.gz`` and ``localization.fasta.gz``, headers ``>sp|ACCESSION``);
    unlabelled sequences are ignored, a labelled accession without a sequence is an error. id =
    accession, label = the location (10 classes, the bundle's spelling, e.g. ``Cell membrane``),
    split ``""``, and ``note`` = `LOCALIZATION_NOTE`: these labels stand in for DeepLoc's.
    """
    labels = _read_table(labels_path, ("accession", "location"), sep="\t")
    sequence_of: dict[str, str] = {}
    found_in: dict[str, str] = {}
    for fasta in fasta_paths:
        for record in read_fasta(fasta):
            accession = uniprot_accession(record.seq_id)
            if accession in sequence_of:
                raise ValueError(f"{fasta}, line {record.line}: accession {accession} is also in "
                                 f"{found_in[accession]}")
            sequence_of[accession] = record.sequence
            found_in[accession] = str(fasta)
    first_line: dict[str, int] = {}
    for index, (accession, location) in enumerate(zip(labels["accession"], labels["location"])):
        where = f"{labels_path}, line {index + 2}"
        if not accession or not location:
            raise ValueError(f"{where}: empty accession or location")
        if accession in first_line:
            raise ValueError(f"{where}: accession {accession} already labelled at line "
                             f"{first_line[accession]}")
        first_line[accession] = index + 2
        if accession not in sequence_of:
            raise ValueError(f"{where}: no sequence for {accession} in "
                             f"{', '.join(map(str, fasta_paths))}")
    return pd.DataFrame({
        "id": labels["accession"],
        "sequence": [sequence_of[accession] for accession in labels["accession"]],
        "label": labels["location"],
        "split": "",
        "note": LOCALIZATION_NOTE,
    })


def load_deeploc(path: str | os.PathLike) -> pd.DataFrame:
    """DeepLoc 1.0's ``deeploc_data.fasta``.

    Headers are ``>ACCESSION Location-X`` or ``>ACCESSION Location-X test``: the location is one of
    `DEEPLOC_LOCATIONS`, X is M/S/U (membrane-bound, soluble, unknown; not kept), and ``test``
    marks the published test split; every other record is train (DeepLoc publishes no validation
    split, `assign_splits` carves one out of train). label = the location.
    """
    rows = []
    for record in read_fasta(path):
        where = f"{path}, line {record.line} ({record.seq_id})"
        words = record.description.split()
        if (len(words) not in (1, 2) or (len(words) == 2 and words[1] != "test")
                or "-" not in words[0]):
            raise ValueError(f"{where}: header {record.description!r} is not 'Location-M|S|U [test]'")
        location, _, membrane = words[0].rpartition("-")
        if location not in DEEPLOC_LOCATIONS:
            raise ValueError(f"{where}: location {location!r} is not one of {', '.join(DEEPLOC_LOCATIONS)}")
        if membrane not in DEEPLOC_MEMBRANE:
            raise ValueError(f"{where}: membrane suffix {membrane!r} is not one of M, S, U")
        rows.append((record.seq_id, record.sequence, location, "test" if len(words) == 2 else "train"))
    return pd.DataFrame(rows, columns=list(TASK_COLUMNS))


def _flag(value: str) -> bool | None:
    """A CSV truth value (True/False, 1/0, empty = False) or None when it is none of them."""
    return {"true": True, "1": True, "false": False, "0": False, "": False}.get(value.strip().lower())


def load_flip_meltome(path: str | os.PathLike) -> pd.DataFrame:
    """A FLIP meltome split CSV (e.g. ``splits/mixed_split.csv``, ``splits/human_cell.csv``).

    Columns ``sequence,target,set,validation``: target is the melting temperature (°C), set is
    train/test, and validation is True on the training rows FLIP holds out for validation.
    label = float(target); split = ``test``, ``valid`` (train with validation True) or ``train``
    (validation, often empty there, is ignored on test rows).
    FLIP's rows carry no identifier, so id = ``meltome_<n>`` with n the 1-based data row
    (file line n + 1).
    """
    rows = _read_table(path, ("sequence", "target", "set", "validation"), sep=",")
    targets, splits = [], []
    for index, (sequence, target, split, validation) in enumerate(
            zip(rows["sequence"], rows["target"], rows["set"], rows["validation"])):
        where = f"{path}, line {index + 2}"
        if not sequence:
            raise ValueError(f"{where}: empty sequence")
        try:
            value = float(target)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{where}: target {target!r} is not a number")
        if split not in FLIP_SETS:
            raise ValueError(f"{where}: set {split!r} is not train or test")
        held_out = _flag(validation)
        if held_out is None:
            raise ValueError(f"{where}: validation {validation!r} is not True or False")
        targets.append(value)
        splits.append("valid" if split == "train" and held_out else split)
    return pd.DataFrame({
        "id": [f"meltome_{n}" for n in range(1, len(rows) + 1)],
        "sequence": rows["sequence"],
        "label": np.asarray(targets, dtype=float),
        "split": splits,
    })


def load_cho(path: str | os.PathLike, sequence_column: str = "sequence", label_column: str = "label",
             id_column: str | None = None, positive: Iterable[str] = CHO_POSITIVE,
             negative: Iterable[str] = CHO_NEGATIVE) -> pd.DataFrame:
    """CHO-cell expression (Mason et al. 2022; paper Table 1), a binary protein-level task.

    The published table is not available offline, so this reads any CSV or TSV (tab-separated
    when the name ends in .tsv, .tab or .txt, optionally .gz) with the column names as options.
    THE EXACT COLUMN NAMES AND LABEL VALUES OF THE PUBLISHED FILE MUST BE CHECKED AGAINST THE REAL
    FILE before this loader is trusted with it.

    label: ``expressed`` for a value in ``positive``, ``not_expressed`` for one in ``negative``
        (case-insensitive; defaults 1/0, True/False, yes/no); any other value is an error.
    id: the ``id_column`` value, or ``cho_<n>`` (1-based data row) without one. split ``""``
        (the paper splits at 40% identity; see `assign_splits`).
    """
    name = str(path).lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".tab", ".txt")) else ","
    required = [sequence_column, label_column] + ([id_column] if id_column else [])
    rows = _read_table(path, required, sep=sep)
    positive = {value.lower() for value in positive}
    negative = {value.lower() for value in negative}
    labels = []
    for index, (sequence, value) in enumerate(zip(rows[sequence_column], rows[label_column])):
        where = f"{path}, line {index + 2}"
        if not sequence.strip():
            raise ValueError(f"{where}: empty {sequence_column}")
        key = value.strip().lower()
        if key not in positive | negative:
            raise ValueError(f"{where}: {label_column} {value!r} is neither positive "
                             f"({', '.join(sorted(positive))}) nor negative ({', '.join(sorted(negative))})")
        labels.append(CHO_CLASSES[0] if key in positive else CHO_CLASSES[1])
    ids = rows[id_column].str.strip() if id_column else [f"cho_{n}" for n in range(1, len(rows) + 1)]
    return pd.DataFrame({"id": ids, "sequence": rows[sequence_column].str.strip(), "label": labels,
                         "split": ""})


LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "dssp_bundle": load_dssp_bundle,
    "structure_bundle": load_structure_bundle,
    "tape_ss": load_tape_ss,
    "localization_bundle": load_localization_bundle,
    "deeploc": load_deeploc,
    "flip_meltome": load_flip_meltome,
    "cho_table": load_cho,
}


def check_task_table(table: pd.DataFrame, residue_level: bool, source: str) -> pd.DataFrame:
    """Check a task table and return it with upper-cased sequences; ValueError naming ``source``
    and the offending id for: a missing column, no rows, an empty id or one with whitespace (it
    becomes a FASTA ID), a duplicate id, a sequence that is not all letters, a residue-level label
    of the wrong length or alphabet, a missing protein-level label, a split outside `SPLITS`."""
    missing = [column for column in TASK_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{source}: task table lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise ValueError(f"{source}: no proteins")
    table = table.assign(sequence=table["sequence"].str.upper())
    first_row: dict[str, int] = {}
    for row, (seq_id, sequence, label, split) in enumerate(
            zip(table["id"], table["sequence"], table["label"], table["split"])):
        if not seq_id or seq_id != "".join(seq_id.split()):
            raise ValueError(f"{source}, row {row}: id {seq_id!r} is empty or contains whitespace")
        if seq_id in first_row:
            raise ValueError(f"{source}: duplicate id {seq_id!r} (rows {first_row[seq_id]} and {row})")
        first_row[seq_id] = row
        if not (sequence.isascii() and sequence.isalpha()):
            raise ValueError(f"{source}: sequence of {seq_id!r} is empty or has non-letters")
        if residue_level:
            problem = _ss3_error(sequence, label)
            if problem:
                raise ValueError(f"{source}: {seq_id!r}: {problem}")
        elif label is None or (isinstance(label, float) and math.isnan(label)) or label == "":
            raise ValueError(f"{source}: {seq_id!r} has no label")
        if split not in SPLITS + ("",):
            raise ValueError(f"{source}: {seq_id!r} has split {split!r}, "
                             f"not one of {', '.join(SPLITS)} or ''")
    return table


def load_task(spec: dict) -> pd.DataFrame:
    """Load a task from a config entry: ``spec["format"]`` names the loader (`LOADERS`), the other
    keys are its arguments (paths etc.). The table then passes `check_task_table`."""
    spec = dict(spec)
    task_format = spec.pop("format", None)
    if task_format not in LOADERS:
        raise ValueError(f"task format {task_format!r} is not one of {', '.join(LOADERS)}")
    loader = LOADERS[task_format]
    try:
        inspect.signature(loader).bind(**spec)
    except TypeError as err:
        raise ValueError(f"task format {task_format!r}: bad arguments {sorted(spec)}: {err}") from None
    table = loader(**spec)
    return check_task_table(table, task_format in RESIDUE_LEVEL_FORMATS, f"{task_format} task {spec}")


# -- splits -------------------------------------------------------------------------------------


def cluster_sequences(table: pd.DataFrame, identity: float, coverage: float = 0.8,
                      threads: int = 1) -> pd.Series:
    """MMseqs2 clusters of a task's sequences: a Series id -> representative id (table order).

    ``-s 7.5`` (MMseqs2's most sensitive preset) because at the 25-40% identity thresholds of the
    probe tasks the default sensitivity misses remote homologs, which would then leak across the
    split. ``--cluster-mode 0`` (greedy set cover, MMseqs2's default, and how the bundle's 30%
    clusters were made) rather than connected components: at 25% identity single-linkage chains
    hits into a few giant clusters, and whole-cluster splits could not approach their fractions.
    The price is that a member of one cluster may still hit a member of another. Sequences are
    written sorted by id, so the clusters do not depend on row order.
    """
    params = ClusterParams(min_seq_id=identity, coverage=coverage, sensitivity=7.5, cluster_mode=0)
    ordered = table.sort_values("id")
    with tempfile.TemporaryDirectory(prefix="protsae-tasks-") as workdir:
        fasta = Path(workdir) / "task.fasta"
        write_fasta((FastaRecord(seq_id, "", sequence, 0)
                     for seq_id, sequence in zip(ordered["id"], ordered["sequence"])), fasta)
        clusters = run_mmseqs_cluster(fasta, params, threads)
    representative = clusters.set_index("member")["representative"]
    return pd.Series(representative.loc[table["id"]].to_numpy(), index=pd.Index(table["id"], name="id"),
                     name="cluster")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not math.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers (train, valid, test) "
                         f"summing to 1, got {list(fractions)}")
    return fractions


def split_clusters(cluster_of: pd.Series, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> pd.Series:
    """Whole clusters to train/valid/test: a Series id -> split, in the order of ``cluster_of``
    (id -> representative).

    Clusters are visited in a random order (seeded; clusters sorted by representative first, so
    the draw does not depend on row order) and each goes to the split furthest below its target
    ``fraction * n_sequences``. A split with fraction 0 is never below target, so gets nothing;
    each split ends within about one cluster's size of its target.
    """
    fractions = _check_fractions(fractions)
    sizes = cluster_of.groupby(cluster_of.to_numpy()).size().sort_index()
    targets = fractions * len(cluster_of)
    counts = np.zeros(len(SPLITS))
    split_of: dict[str, str] = {}
    for position in np.random.default_rng(seed).permutation(len(sizes)):
        side = int(np.argmax(targets - counts))
        counts[side] += sizes.iloc[position]
        split_of[sizes.index[position]] = SPLITS[side]
    return pd.Series([split_of[representative] for representative in cluster_of],
                     index=cluster_of.index, name="split")


def homology_split(table: pd.DataFrame, identity: float, coverage: float = 0.8,
                   fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                   threads: int = 1) -> pd.Series:
    """Split a task by sequence cluster: `cluster_sequences` at ``identity`` (fraction, e.g. 0.25)
    and ``coverage``, then `split_clusters`. Returns a Series id -> train/valid/test (table order);
    no cluster has members on two sides."""
    _check_fractions(fractions)
    return split_clusters(cluster_sequences(table, identity, coverage, threads), fractions, seed)


def assign_splits(table: pd.DataFrame, identity: float, coverage: float = 0.8,
                  fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  threads: int = 1) -> pd.DataFrame:
    """The task table with ``split`` filled and a ``cluster`` column (representative id).

    * A published split with train, valid and test is kept as it is.
    * A published split without ``valid`` (DeepLoc) keeps its test rows; valid is carved out of
      train by cluster, ``fractions[1] / (fractions[0] + fractions[1])`` of the training rows.
    * No published split (all ``""``): `split_clusters` with ``fractions``.
    Clusters are computed over all rows (``identity``, ``coverage`` as in `cluster_sequences`),
    so a published split's cross-split clusters stay visible in ``cluster``.
    """
    fractions = _check_fractions(fractions)
    published = set(table["split"])
    if "" in published and published != {""}:
        raise ValueError(f"split column mixes published splits {sorted(published - {''})} with empty ones")
    cluster_of = cluster_sequences(table, identity, coverage, threads)
    split = table["split"].to_numpy(dtype=object).copy()
    if published == {""}:
        split = split_clusters(cluster_of, fractions, seed).to_numpy()
    elif "valid" not in published and fractions[1] > 0:
        is_train = split == "train"
        if not is_train.any():
            raise ValueError("published split has neither valid nor train rows to carve valid from")
        valid_share = fractions[1] / (fractions[0] + fractions[1])
        split[is_train] = split_clusters(cluster_of[is_train], (1 - valid_share, valid_share, 0.0),
                                         seed).to_numpy()
    return table.assign(split=split, cluster=cluster_of.to_numpy())


def subsample(table: pd.DataFrame, max_items: int, seed: int) -> pd.DataFrame:
    """A seeded random subset of at most ``max_items`` rows, in table order, taken before
    clustering (the demo uses a few thousand of the bundle's 20k chains).

    Stratified by ``split`` so a published split keeps its proportions: each split gets its share
    of ``max_items`` rounded by largest remainder (so the total is exactly ``max_items``).
    The whole table (a copy) when it has no more rows than that.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    if len(table) <= max_items:
        return table.copy()
    sizes = table.groupby("split").size().sort_index()
    exact = sizes.to_numpy() * max_items / len(table)
    quotas = np.floor(exact).astype(int)
    # Largest remainder; a stable sort breaks ties by split name, so the quotas are deterministic.
    for position in np.argsort(-(exact - quotas), kind="stable")[: max_items - quotas.sum()]:
        quotas[position] += 1
    rng = np.random.default_rng(seed)
    split = table["split"].to_numpy()
    keep = np.concatenate([rng.choice(np.flatnonzero(split == name), size=quota, replace=False)
                           for name, quota in zip(sizes.index, quotas)])
    return table.iloc[np.sort(keep)].reset_index(drop=True)


# -- task files ---------------------------------------------------------------------------------


def write_task(table: pd.DataFrame, fasta_path: str | os.PathLike, labels_path: str | os.PathLike) -> None:
    """Write a split task, both files atomically: the sequences as FASTA (``>id``, table order)
    and a TSV ``id split label length cluster`` (``length`` in residues) plus ``subset`` and
    ``note`` when the table has them."""
    missing = [column for column in TASK_COLUMNS + ("cluster",) if column not in table.columns]
    if missing:
        raise ValueError(f"task table lacks column(s) {', '.join(missing)}; run assign_splits first")
    write_fasta((FastaRecord(seq_id, "", sequence, 0)
                 for seq_id, sequence in zip(table["id"], table["sequence"])), fasta_path)
    labels = pd.DataFrame({
        "id": table["id"], "split": table["split"], "label": table["label"],
        "length": table["sequence"].str.len(), "cluster": table["cluster"],
    })
    for column in OPTIONAL_COLUMNS:
        if column in table.columns:
            labels[column] = table[column]
    with atomic_path(labels_path) as tmp:
        labels.to_csv(tmp, sep="\t", index=False)


def read_task_labels(path: str | os.PathLike) -> pd.DataFrame:
    """A labels TSV written by `write_task`: text columns as str (``""`` kept), ``length`` int,
    and ``label`` float when every label is a number (regression tasks), else str."""
    labels = _read_table(path, ("id", "split", "label", "length", "cluster"), sep="\t")
    labels["length"] = labels["length"].astype(int)
    numeric = pd.to_numeric(labels["label"], errors="coerce")
    if numeric.notna().all():
        labels["label"] = numeric.astype(float)
    return labels
