"""What the latent browser shows of each latent (METHODS.md section 13), drawn from one SAE's codes
of one dataset and its per-protein maxima.

* Example proteins in InterProt's activation-quantile bins: a protein falls in the bin of its
  largest activation over the latent's largest over the dataset (``norm``): (0.75, 1],
  (0.5, 0.75], (0.25, 0.5], (0, 0.25]. The top bin shows its ``n`` strongest proteins; a lower
  bin shows ``n`` spread evenly by rank over the bin (its strongest, its weakest and those
  between), so each bin shows what its range holds. Ties go to the protein id that sorts first.
* Structure proteins: the ``n`` strongest proteins of the latent that have a matched structure.
* Per latent: the number of proteins it fires on, their share of the dataset (density), its
  largest activation and the histogram of its per-protein maxima (20 bins of ``norm``).

Each chosen (protein, latent) comes with its track: every residue where the latent is active
and its value, read from the codes as the activation-pattern classifier reads them.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protsae.codes.maxima import MaxActivations
from protsae.files import atomic_path
from protsae.latents.patterns import collect_tracks

BINS = ((0.75, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.25))
"""InterProt's activation-quantile bins, strongest first, each (lo, hi] of ``norm``."""
BIN_NAMES = ("0.75-1", "0.5-0.75", "0.25-0.5", "0-0.25")
STRUCTURE_GROUP = len(BINS)
"""The ``group`` of the structure proteins in an examples table (the bins are 0..3)."""
HISTOGRAM_BINS = 20


def bin_of(norm: np.ndarray) -> np.ndarray:
    """The bin (0 strongest .. 3) of each ``norm`` in (0, 1]."""
    edges = np.array([lo for lo, _ in BINS[:-1]])  # 0.75, 0.5, 0.25
    return (norm <= edges[:, None]).sum(axis=0).astype(np.int64)


def spread_ranks(count: np.ndarray, rank: np.ndarray, n: int) -> np.ndarray:
    """Whether rank ``rank`` of a group of ``count`` is one of ``n`` ranks spread evenly over the
    group (round(i (count - 1) / (n - 1)) for i = 0..n-1); every rank when count <= n."""
    count, rank = np.asarray(count, np.int64), np.asarray(rank, np.int64)
    if n <= 1:
        return rank == 0
    chosen = count <= n
    big = ~chosen
    for offset in (0, 1):
        i = rank[big] * (n - 1) // np.maximum(count[big] - 1, 1) + offset
        target = (2 * i * (count[big] - 1) + (n - 1)) // (2 * (n - 1))
        chosen[big] |= (i < n) & (target == rank[big])
    return chosen


def _ordered_pairs(maxima: MaxActivations, keep: np.ndarray | None = None):
    """(latent, protein, value, norm) of the non-zero maxima, by latent, largest first, ties by id."""
    id_rank = np.empty(len(maxima.protein_ids), dtype=np.int64)
    id_rank[np.argsort(np.array(maxima.protein_ids, dtype=str), kind="stable")] = np.arange(len(maxima.protein_ids))
    latent, protein, value = maxima.latent.astype(np.int64), maxima.protein.astype(np.int64), maxima.value
    if keep is not None:
        latent, protein, value = latent[keep], protein[keep], value[keep]
    order = np.lexsort((id_rank[protein], -value, latent))
    latent, protein, value = latent[order], protein[order], value[order]
    top = maxima.latent_max() if keep is None else np.zeros(maxima.n_latents, np.float32)
    if keep is not None:
        np.maximum.at(top, latent, value)
    norm = value.astype(np.float64) / np.maximum(top[latent].astype(np.float64), np.finfo(np.float64).tiny)
    return latent, protein, value, norm


def _rank_in_group(group_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank within runs of equal (sorted) keys, and each entry's run length."""
    if group_key.size == 0:
        return group_key.copy(), group_key.copy()
    first = np.flatnonzero(np.r_[True, group_key[1:] != group_key[:-1]])
    sizes = np.diff(np.r_[first, group_key.size])
    return np.arange(group_key.size) - np.repeat(first, sizes), np.repeat(sizes, sizes)


def choose_examples(maxima: MaxActivations, n_per_bin: int) -> pd.DataFrame:
    """The binned example proteins of every latent: columns latent, group (bin), rank (within the
    bin, strongest first), protein (id), max (the protein's largest activation), norm."""
    latent, protein, value, norm = _ordered_pairs(maxima)
    group = bin_of(norm)
    # Within a latent the pairs are already by value, so they are by bin too: runs of (latent, bin).
    rank, count = _rank_in_group(latent * len(BINS) + group)
    chosen = np.where(group == 0, rank < n_per_bin, spread_ranks(count, rank, n_per_bin))
    return _table(maxima, latent[chosen], group[chosen], rank[chosen], protein[chosen], value[chosen], norm[chosen])


def choose_structures(maxima: MaxActivations, n: int, with_structure: Collection[str]) -> pd.DataFrame:
    """The ``n`` strongest proteins of every latent among ``with_structure`` (same columns; group
    `STRUCTURE_GROUP`, norm relative to the latent's largest over the whole dataset)."""
    has = np.fromiter((pid in with_structure for pid in maxima.protein_ids), bool, len(maxima.protein_ids))
    latent, protein, value, _ = _ordered_pairs(maxima, has[maxima.protein])
    rank, _ = _rank_in_group(latent)
    chosen = rank < n
    top = maxima.latent_max()[latent[chosen]].astype(np.float64)
    return _table(maxima, latent[chosen], np.full(chosen.sum(), STRUCTURE_GROUP), rank[chosen],
                  protein[chosen], value[chosen], value[chosen] / np.maximum(top, np.finfo(np.float64).tiny))


def _table(maxima, latent, group, rank, protein, value, norm) -> pd.DataFrame:
    return pd.DataFrame({
        "latent": latent.astype(np.int32), "group": group.astype(np.int8), "rank": rank.astype(np.int32),
        "protein": [maxima.protein_ids[p] for p in protein], "max": value.astype(np.float32),
        "norm": norm.astype(np.float32),
    })


def latent_overview(maxima: MaxActivations, n_proteins: int) -> pd.DataFrame:
    """Per latent: n_proteins (it fires on), density (their share of the dataset's
    ``n_proteins``), max, and histogram (`HISTOGRAM_BINS` counts of norm over (0, 1])."""
    latent_max = maxima.latent_max()
    norm = maxima.value.astype(np.float64) / np.maximum(latent_max[maxima.latent].astype(np.float64),
                                                         np.finfo(np.float64).tiny)
    column = np.minimum(np.ceil(norm * HISTOGRAM_BINS).astype(np.int64) - 1, HISTOGRAM_BINS - 1).clip(0)
    histogram = np.zeros((maxima.n_latents, HISTOGRAM_BINS), dtype=np.int64)
    np.add.at(histogram, (maxima.latent.astype(np.int64), column), 1)
    fires = histogram.sum(axis=1)
    return pd.DataFrame({
        "latent": np.arange(maxima.n_latents, dtype=np.int32), "n_proteins": fires,
        "density": fires / max(n_proteins, 1), "max": latent_max, "histogram": list(histogram),
    })


def with_tracks(chosen: pd.DataFrame, code_paths: Sequence[str | os.PathLike],
                lengths: Mapping[str, int]) -> pd.DataFrame:
    """``chosen`` with each pair's track: positions (int32, ascending) and values (float32) of
    the residues where the latent is active, and the protein's length."""
    tracks = collect_tracks(code_paths, list(zip(chosen["protein"], chosen["latent"].tolist())), lengths)
    empty = np.flatnonzero(tracks.n_active == 0)
    if empty.size:
        row = chosen.iloc[int(empty[0])]
        raise ValueError(f"latent {row['latent']} has no active residue in {row['protein']} in the codes, "
                         "though its maxima say it has: were they computed from other codes?")
    spans = list(pairwise(tracks.offsets.tolist()))
    return chosen.assign(
        length=tracks.lengths.astype(np.int32),
        positions=[tracks.positions[a:b].astype(np.int32) for a, b in spans],
        values=[tracks.values[a:b].astype(np.float32) for a, b in spans],
    )


EXAMPLE_SCHEMA = pa.schema([
    ("latent", pa.int32()), ("group", pa.int8()), ("rank", pa.int32()), ("protein", pa.string()),
    ("max", pa.float32()), ("norm", pa.float32()), ("length", pa.int32()),
    ("positions", pa.list_(pa.int32())), ("values", pa.list_(pa.float32())),
])
OVERVIEW_SCHEMA = pa.schema([
    ("latent", pa.int32()), ("n_proteins", pa.int64()), ("density", pa.float64()), ("max", pa.float32()),
    ("histogram", pa.list_(pa.int64(), HISTOGRAM_BINS)),
])


def write_table(table: pd.DataFrame, schema: pa.Schema, path: str | os.PathLike, metadata: dict | None = None) -> None:
    arrow = pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False)
    if metadata:
        arrow = arrow.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """An examples or overview table; list columns as numpy arrays."""
    table = pq.read_table(path).to_pandas()
    for column in ("positions", "values", "histogram"):
        if column in table:
            table[column] = [np.asarray(v) for v in table[column]]
    return table
