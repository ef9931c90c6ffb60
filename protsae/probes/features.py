"""Probe features, read from the Parquet shards batch by batch (memory is what is kept, plus one
batch):

- protein level, mean-pooled: `pooled_activations` averages a protein's activation rows
  ((n_proteins, d_model)); `pooled_codes` averages its SAE latent vectors, inactive latents
  counting as 0 ((n_proteins, n_latents), from the sparse idx/val codes without densifying rows);
- residue level: `residue_activations` / `residue_codes` keep every residue whose label is not
  ``-`` as a `ResidueData` (dense (n, d_model) activations, or the sparse (n, k) codes), aligned
  with its label by (seq_id, pos).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from protsae.activations.storage import (
    column_to_numpy,
    column_width,
    list_to_numpy,
    read_acts,
    shard_batches,
    shard_metadata,
)

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


NO_LABEL = "-"


def _paths(path_or_paths: PathOrPaths) -> list[str | os.PathLike]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [path_or_paths]
    return list(path_or_paths)


def _index_of(ids: Sequence[str]) -> dict[str, int]:
    index = {seq_id: i for i, seq_id in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError("ids contain duplicates")
    return index


def _missing(ids: Sequence[str], counts: np.ndarray, what: str) -> None:
    missing = [ids[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"no {what} rows for {len(missing)} protein(s): {shown}")


def pooled_activations(shard_paths: PathOrPaths, ids: Sequence[str], batch_rows: int = 32768) -> np.ndarray:
    """Mean activation over each protein's residues: (len(ids), d_model) float32, rows in the
    order of ``ids``. Rows of proteins not in ``ids`` are skipped; an id without rows is an error."""
    if not len(ids):
        raise ValueError("no ids to pool")
    index_of = _index_of(ids)
    sums: np.ndarray | None = None
    counts = np.zeros(len(ids), dtype=np.int64)
    for batch, row_protein in shard_batches(shard_paths, ["act"], index_of, batch_rows):
        keep = row_protein >= 0
        protein = row_protein[keep]
        if protein.size == 0:
            continue
        acts = read_acts(batch)[keep].astype(np.float32)
        if sums is None:
            sums = np.zeros((len(ids), acts.shape[1]), dtype=np.float64)
        # A protein's residues are consecutive rows: sum each run, then add the few run sums
        # (add.at, as a protein may also span batches or shards).
        starts = np.flatnonzero(np.r_[True, protein[1:] != protein[:-1]])
        np.add.at(sums, protein[starts], np.add.reduceat(acts, starts, axis=0))
        counts += np.bincount(protein, minlength=len(ids))
    _missing(ids, counts, "activation")
    return (sums / counts[:, None]).astype(np.float32)


def pooled_codes(code_paths: PathOrPaths, ids: Sequence[str], n_latents: int | None = None,
                 batch_rows: int = 65536) -> np.ndarray:
    """Mean SAE latent vector over each protein's residues: (len(ids), n_latents) float32, i.e.
    per protein and latent the sum of its activations over the protein's residues divided by the
    number of residues (rows); inactive slots (val == 0) add nothing. n_latents: from the shard
    metadata when None."""
    paths = _paths(code_paths)
    if n_latents is None:
        n_latents = int(shard_metadata(paths[0])["n_latents"])
    index_of = _index_of(ids)
    sums = np.zeros(len(ids) * n_latents, dtype=np.float64)
    counts = np.zeros(len(ids), dtype=np.int64)
    for batch, row_protein in shard_batches(paths, ["idx", "val"], index_of, batch_rows):
        keep = row_protein >= 0
        protein = row_protein[keep]
        idx = list_to_numpy(batch.column("idx"))[keep]
        val = list_to_numpy(batch.column("val"))[keep]
        active = val != 0
        latent = idx[active].astype(np.int64)
        if latent.size and (latent.min() < 0 or latent.max() >= n_latents):
            raise ValueError(f"latent index outside [0, {n_latents})")
        keys = np.broadcast_to(protein[:, None], active.shape)[active] * n_latents + latent
        np.add.at(sums, keys, val[active])
        counts += np.bincount(protein, minlength=len(ids))
    _missing(ids, counts, "code")
    return (sums.reshape(len(ids), n_latents) / counts[:, None]).astype(np.float32)


@dataclass
class ResidueData:
    """Features and labels of the labelled residues of a residue-level task, one row per residue.

    Dense features: ``features`` (n, d) float32. Sparse SAE codes: ``idx`` (n, k) int32 latent
    indices and ``val`` (n, k) float32 activations (val == 0: inactive slot), over
    ``n_features`` latents. ``y`` (n,) int64 index into ``classes``; ``split`` (n,) str;
    ``protein`` (n,) int64 index into ``protein_ids``; ``pos`` (n,) int32 0-based residue index.
    """

    y: np.ndarray
    split: np.ndarray
    protein: np.ndarray
    pos: np.ndarray
    classes: list[str]
    protein_ids: list[str]
    n_features: int
    features: np.ndarray | None = None
    idx: np.ndarray | None = None
    val: np.ndarray | None = None

    @property
    def sparse(self) -> bool:
        return self.features is None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class _ResidueLabels:
    """Per-residue class codes of every labelled protein, concatenated: ``codes[offset[p] + pos]``
    (int8; -1 = no label)."""

    protein_ids: list[str]
    split: np.ndarray
    classes: list[str]
    codes: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    n_labelled: np.ndarray


def _residue_labels(labels: pd.DataFrame) -> _ResidueLabels:
    strings = labels["label"].astype(str).tolist()
    bad_length = [i for i, (s, n) in enumerate(zip(strings, labels["length"])) if len(s) != n]
    if bad_length:
        raise ValueError(f"label length differs from `length` for {labels['id'].iloc[bad_length[0]]!r} "
                         f"and {len(bad_length) - 1} more")
    classes = sorted(set("".join(strings)) - {NO_LABEL})
    code_of = np.full(256, -1, dtype=np.int8)
    for code, name in enumerate(classes):
        if len(name.encode()) != 1:
            raise ValueError(f"residue classes must be single ASCII characters, got {name!r}")
        code_of[ord(name)] = code
    codes = code_of[np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)]
    length = np.array([len(s) for s in strings], dtype=np.int64)
    offset = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)
    labelled = codes >= 0
    protein_of_residue = np.repeat(np.arange(len(strings)), length)
    return _ResidueLabels(
        protein_ids=labels["id"].astype(str).tolist(),
        split=labels["split"].astype(str).to_numpy(),
        classes=classes,
        codes=codes,
        offset=offset,
        length=length,
        n_labelled=np.bincount(protein_of_residue[labelled], minlength=len(strings)),
    )


def _read_residues(paths: PathOrPaths, labels: pd.DataFrame, columns: dict[str, type],
                   batch_rows: int) -> tuple[_ResidueLabels, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Walk the shards and keep the labelled residues of ``labels``.

    columns: the fixed-size columns (list or protsae binary) to keep and the dtype of each, e.g. {"act": np.float32}.
    Returns the labels, the kept residues' protein (n,), pos (n,) and class code (n,), and per
    column an (n, width) array, filled in place (n is known from the labels).
    """
    table = _residue_labels(labels)
    index_of = _index_of(table.protein_ids)
    n_rows = int(table.n_labelled.sum())
    protein_out = np.empty(n_rows, dtype=np.int64)
    pos_out = np.empty(n_rows, dtype=np.int32)
    y_out = np.empty(n_rows, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    filled = 0
    for batch, row_protein in shard_batches(paths, ["pos", *columns], index_of, batch_rows):
        if not arrays:
            arrays = {name: np.empty((n_rows, column_width(batch.schema.field(name))), dtype=dtype)
                      for name, dtype in columns.items()}
        pos = batch.column("pos").to_numpy(zero_copy_only=False).astype(np.int64)
        listed = row_protein >= 0
        if np.any(pos[listed] >= table.length[row_protein[listed]]) or np.any(pos < 0):
            raise ValueError("a shard row's pos lies outside its protein's label")
        code = np.full(len(pos), -1, dtype=np.int64)
        code[listed] = table.codes[table.offset[row_protein[listed]] + pos[listed]]
        keep = code >= 0
        stop = filled + int(keep.sum())
        if stop > n_rows:
            raise ValueError("the shards hold more labelled residues than the labels (duplicate rows?)")
        protein_out[filled:stop] = row_protein[keep]
        pos_out[filled:stop] = pos[keep]
        y_out[filled:stop] = code[keep]
        for name, array in arrays.items():
            array[filled:stop] = column_to_numpy(batch, name)[keep]
        filled = stop
    found = np.bincount(protein_out[:filled], minlength=len(table.protein_ids))
    short = np.flatnonzero(found != table.n_labelled)
    if short.size:
        p = short[0]
        raise ValueError(f"{table.protein_ids[p]!r}: {table.n_labelled[p]} labelled residues, "
                         f"{found[p]} in the shards ({short.size} protein(s) differ)")
    if not arrays:
        raise ValueError("the shards hold no rows")
    # Equal counts per protein could still hide a duplicate pos paired with a missing one.
    if np.unique(protein_out * (table.length.max() + 1) + pos_out).size != n_rows:
        raise ValueError("the shards hold a (seq_id, pos) more than once")
    return table, protein_out, pos_out, y_out, arrays


def _residue_data(table: _ResidueLabels, protein: np.ndarray, pos: np.ndarray, y: np.ndarray,
                  n_features: int, **features) -> ResidueData:
    return ResidueData(y=y, split=table.split[protein], protein=protein, pos=pos, classes=table.classes,
                       protein_ids=table.protein_ids, n_features=n_features, **features)


def residue_activations(shard_paths: PathOrPaths, labels: pd.DataFrame, batch_rows: int = 32768) -> ResidueData:
    """The activations of every labelled residue of ``labels`` (columns id, split, label, length;
    label: one class character per residue, ``-`` = no label) as dense (n, d_model) float32
    features, rows in shard order."""
    table, protein, pos, y, arrays = _read_residues(shard_paths, labels, {"act": np.float32}, batch_rows)
    features = arrays["act"]
    return _residue_data(table, protein, pos, y, features.shape[1], features=features)


def residue_codes(code_paths: PathOrPaths, labels: pd.DataFrame, n_latents: int | None = None,
                  batch_rows: int = 65536) -> ResidueData:
    """The SAE codes of every labelled residue of ``labels`` (see `residue_activations`), kept
    sparse: idx (n, k) int32, val (n, k) float32. n_latents: from the shard metadata when None."""
    paths = _paths(code_paths)
    if n_latents is None:
        n_latents = int(shard_metadata(paths[0])["n_latents"])
    table, protein, pos, y, arrays = _read_residues(paths, labels, {"idx": np.int32, "val": np.float32},
                                                    batch_rows)
    idx = arrays["idx"]
    if idx.size and (idx.min() < 0 or idx.max() >= n_latents):
        raise ValueError(f"latent index outside [0, {n_latents})")
    return _residue_data(table, protein, pos, y, n_latents, idx=idx, val=arrays["val"])

