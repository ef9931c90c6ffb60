"""The concept table: one row per concept instance, whatever the source.

Columns: ``protein`` (the dataset's sequence id), ``concept`` (its name, prefixed by its source:
``Pfam:PF00005 ABC_tran``, ``DSSP:H``, ``Swiss-Prot:Binding site: ATP``, ``AA:C``), ``start`` and
``end`` (0-based, half-open: residues ``start .. end - 1``), ``kind``:

* ``interval``: an annotated stretch (a domain, a helix, a signal peptide); recall counts an
  instance as found when any of its residues is predicted;
* ``residue``: sites (active and binding sites, modified residues, the two ends of a disulfide
  bond, amino acids); every residue of the row is its own instance, recall is per residue.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from protsae.files import atomic_path

CONCEPT_COLUMNS = ("protein", "concept", "start", "end", "kind")
KINDS = ("interval", "residue")


def concept_frame(rows) -> pd.DataFrame:
    """A concept table from an iterable of (protein, concept, start, end, kind) tuples or a frame
    with those columns, typed and sorted (protein, concept, start, end)."""
    table = pd.DataFrame(rows, columns=list(CONCEPT_COLUMNS)) if not isinstance(rows, pd.DataFrame) else rows
    table = table.astype({"protein": str, "concept": str, "start": np.int64, "end": np.int64, "kind": str})
    return table.sort_values(["protein", "concept", "start", "end"], kind="stable").reset_index(drop=True)


def check_concepts(table: pd.DataFrame, lengths: dict[str, int] | None = None, where: str = "concept table") -> None:
    """ValueError naming the first bad row: an unknown kind, an empty or negative interval, or
    (with ``lengths``, protein -> residues) one that runs past its protein's end."""
    missing = [column for column in CONCEPT_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{where}: lacks column(s) {', '.join(missing)}")
    if table.empty:
        return
    bad = ~table["kind"].isin(KINDS) | (table["start"] < 0) | (table["end"] <= table["start"])
    if lengths is not None:
        length = pd.to_numeric(table["protein"].map(lengths), errors="coerce")
        bad |= length.notna().to_numpy() & (table["end"].to_numpy() > length.fillna(0).to_numpy())
    if bad.any():
        row = table[bad].iloc[0]
        raise ValueError(f"{where}: row {int(np.flatnonzero(bad.to_numpy())[0]) + 1} "
                         f"({row['protein']}, {row['concept']!r}, {row['start']}..{row['end']}, {row['kind']}) "
                         f"is not a non-empty interval of kind {'/'.join(KINDS)} inside its protein")


def write_concepts(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a concept table as TSV (gzip when ``path`` ends in .gz), atomically."""
    with atomic_path(path) as tmp:
        table.loc[:, list(CONCEPT_COLUMNS)].to_csv(tmp, sep="\t", index=False,
                                                   compression="gzip" if str(path).endswith(".gz") else None)


def read_concepts(path: str | os.PathLike) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", dtype={"protein": str, "concept": str, "kind": str},
                        keep_default_na=False)
    check_concepts(table, where=str(path))
    return concept_frame(table)
