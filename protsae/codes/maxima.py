"""Per-protein maxima: the sparse proteins x latents matrix of each protein's largest activation
per latent, built from code shards with memory proportional to the non-zeros. The latent analyses
and the probes read latents through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protsae.activations.storage import (
    list_to_numpy,
    shard_metadata,
)
from protsae.files import atomic_path


@dataclass
class MaxActivations:
    """Per protein and latent, the largest activation over the protein's residues, as a sparse
    (n_proteins, n_latents) matrix in coordinate form, sorted by (protein, latent).

    protein_ids: the row labels, in order of first appearance. protein: (nnz,) int64 rows.
    latent: (nnz,) int32 columns. value: (nnz,) float32, all > 0 (inactive pairs are absent).
    """

    protein_ids: list[str]
    protein: np.ndarray
    latent: np.ndarray
    value: np.ndarray
    n_latents: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.protein_ids), self.n_latents

    def to_scipy(self):
        """The matrix as ``scipy.sparse.csr_array``."""
        from scipy.sparse import csr_array

        return csr_array((self.value, (self.protein, self.latent)), shape=self.shape)

    def to_dense(self) -> np.ndarray:
        """(n_proteins, n_latents) float32; for small cases and tests."""
        dense = np.zeros(self.shape, dtype=np.float32)
        dense[self.protein, self.latent] = self.value
        return dense

    def latent_max(self) -> np.ndarray:
        """(n_latents,) float32: each latent's largest activation over all proteins (0 if none)."""
        top = np.zeros(self.n_latents, dtype=np.float32)
        np.maximum.at(top, self.latent, self.value)
        return top

    def save(self, path: str | os.PathLike) -> None:
        """Write the matrix, and each latent's global maximum (``latent_max``, for readers
        outside protsae), as an uncompressed ``.npz`` (atomically)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, protein_ids=np.array(self.protein_ids, dtype=str), protein=self.protein,
                     latent=self.latent, value=self.value, n_latents=np.int64(self.n_latents),
                     latent_max=self.latent_max())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MaxActivations":
        with np.load(path) as data:
            return cls(
                protein_ids=data["protein_ids"].tolist(),
                protein=data["protein"],
                latent=data["latent"],
                value=data["value"],
                n_latents=int(data["n_latents"]),
            )


def _max_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys (sorted) and the maximum of ``values`` per key."""
    if keys.size == 0:
        return keys, values
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.maximum.reduceat(values, starts)


def max_activation_per_protein(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    n_latents: int | None = None,
    batch_rows: int = 262144,
) -> MaxActivations:
    """Max activation of every latent in every protein, over one or more code shards.

    n_latents: the matrix width; read from the shard metadata when None. A protein's rows may be
    spread over batches and shards; each batch is reduced to its (protein, latent) maxima and
    the partial maxima are reduced once more at the end.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if n_latents is None:
        n_latents = int(shard_metadata(paths[0])["n_latents"])
    protein_index: dict[str, int] = {}
    partial_keys, partial_values = [], []
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=["seq_id", "idx", "val"]):
                idx, val = list_to_numpy(batch.column("idx")), list_to_numpy(batch.column("val"))
                encoded = pc.dictionary_encode(batch.column("seq_id"))
                # One dictionary look-up per protein of the batch, not per row.
                local_to_global = np.array(
                    [protein_index.setdefault(seq_id, len(protein_index))
                     for seq_id in encoded.dictionary.to_pylist()],
                    dtype=np.int64,
                )
                row_protein = local_to_global[encoded.indices.to_numpy(zero_copy_only=False)]
                active = val > 0
                latents = idx[active].astype(np.int64)
                if latents.size and (latents.min() < 0 or latents.max() >= n_latents):
                    raise ValueError(f"{path}: latent index outside [0, {n_latents})")
                keys = np.broadcast_to(row_protein[:, None], active.shape)[active] * n_latents + latents
                batch_keys, batch_max = _max_by_key(keys, val[active])
                partial_keys.append(batch_keys)
                partial_values.append(batch_max)
    keys, values = _max_by_key(
        np.concatenate(partial_keys) if partial_keys else np.zeros(0, np.int64),
        np.concatenate(partial_values) if partial_values else np.zeros(0, np.float32),
    )
    return MaxActivations(
        protein_ids=list(protein_index),
        protein=keys // n_latents,
        latent=(keys % n_latents).astype(np.int32),
        value=values.astype(np.float32),
        n_latents=n_latents,
    )

