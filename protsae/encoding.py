"""Sparse latent codes of every residue (METHODS.md section 4).

A code shard holds one row per residue: ``seq_id`` (string), ``pos`` (int32, 0-based residue
index), ``idx`` (fixed_size_list<int32>[k], latent indices) and ``val``
(fixed_size_list<float32>[k], their activations), with the k entries of a row ordered by value,
largest first (ties by latent index). A TopK SAE may keep a latent whose activation is 0 after the
ReLU: such slots carry ``val == 0`` and mean "not active". The schema metadata (JSON values, as in
the activation shards) records the SAE, the layer, k, n_latents and, where known, the model.

Codes come either from a cached activation shard (`encode_cache`) or straight from the model
(`encode_from_model`), which never stores the dense activations.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from . import __version__
from .activations import (
    ShardWriter,
    json_metadata,
    list_column,
    list_type,
    list_to_numpy,
    read_acts,
    shard_metadata,
    token_budget_batches,
)
from .models import ProteinLM
from .sae import load_sae
from .utils import atomic_path

FORMAT_VERSION = 1
# Unlike float16 activations, codes compress: zstd shrank 100k rows (k = 32) from 26.8 to 17.0 MB
# (latent indices use 11 of their 32 bits) at no measurable cost in encode_cache's time.
DEFAULT_COMPRESSION = "zstd"


def code_schema(k: int, metadata: dict) -> pa.Schema:
    """Schema of a code shard; ``metadata`` values are stored as JSON."""
    return pa.schema(
        [
            pa.field("seq_id", pa.string(), nullable=False),
            pa.field("pos", pa.int32(), nullable=False),
            pa.field("idx", list_type(pa.int32(), k), nullable=False),
            pa.field("val", list_type(pa.float32(), k), nullable=False),
        ],
        metadata=json_metadata(metadata),
    )


def _code_shard_schema(sae, sae_path, layer: int | None, model: dict | None, source: str | None,
                       metadata: dict | None) -> pa.Schema:
    cfg = sae.cfg
    k_store = getattr(cfg, "k_store", None) or cfg.k  # slots encode() returns (> k for BatchTopK)
    return code_schema(k_store, {
        "protsae_format": FORMAT_VERSION,
        "protsae_version": __version__,
        "sae": {
            "path": str(sae_path) if sae_path is not None else None,
            "config": asdict(cfg) if is_dataclass(cfg) else dict(vars(cfg)),
        },
        "layer": layer,
        "k": k_store,
        "n_latents": cfg.n_latents,
        "d_model": cfg.d_model,
        "model": model,
        "source": source,
        **(metadata or {}),
    })



def sae_placement(sae) -> tuple[torch.device | None, torch.dtype]:
    """Device and dtype of an SAE's weights; (None, float32) for a stand-in without parameters."""
    parameter = next(sae.parameters(), None) if isinstance(sae, torch.nn.Module) else None
    if parameter is None:
        return None, torch.float32
    return parameter.device, parameter.dtype


@torch.no_grad()
def encode_rows(sae, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``x`` (n, d_model): idx (n, k) int32 and val (n, k) float32, each row ordered
    by value, largest first, ties by latent index (so codes do not depend on top-k internals)."""
    device, dtype = sae_placement(sae)
    vals, idx = sae.encode(x.to(device=device or x.device, dtype=dtype))
    idx, by_index = idx.sort(dim=1)
    vals = vals.float().gather(1, by_index)
    vals, by_value = vals.sort(dim=1, descending=True, stable=True)
    idx = idx.gather(1, by_value)
    return idx.to(torch.int32).cpu().numpy(), vals.cpu().numpy()


@dataclass
class EncodeStats:
    """What one encoding job did, for its log."""

    n_rows: int = 0
    n_sequences: int | None = None
    forward_seconds: float = 0.0
    encode_seconds: float = 0.0
    total_seconds: float = 0.0
    n_active: int = 0
    latent_fired: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        fired = int(np.count_nonzero(self.latent_fired)) if self.latent_fired is not None else None
        return {
            "n_rows": self.n_rows,
            "n_sequences": self.n_sequences,
            "forward_seconds": self.forward_seconds,
            "encode_seconds": self.encode_seconds,
            "total_seconds": self.total_seconds,
            "rows_per_second": self.n_rows / max(self.total_seconds, 1e-9),
            "l0": self.n_active / max(self.n_rows, 1),
            "latents_fired": fired,
        }

    def add(self, idx: np.ndarray, val: np.ndarray, n_latents: int) -> None:
        """Count one batch of codes: idx, val (n, k)."""
        active = val > 0
        self.n_rows += len(idx)
        self.n_active += int(active.sum())
        fired = np.bincount(idx[active], minlength=n_latents)
        self.latent_fired = fired if self.latent_fired is None else self.latent_fired + fired


def _code_batch(schema: pa.Schema, seq_id: pa.Array, pos: np.ndarray, idx: np.ndarray,
                val: np.ndarray) -> pa.RecordBatch:
    """One record batch of codes: idx, val (n, k) become fixed-size-list columns over their buffers."""
    if seq_id.type != pa.string():
        seq_id = seq_id.cast(pa.string())
    return pa.RecordBatch.from_arrays(
        [seq_id, pa.array(pos, pa.int32()), list_column(idx, pa.int32()), list_column(val, pa.float32())],
        schema=schema,
    )


def _resolve_sae(sae, sae_path):
    """An SAE object and the path it came from (when given one)."""
    if isinstance(sae, (str, os.PathLike)):
        return load_sae(sae), sae
    return sae, sae_path


def encode_cache(
    sae,
    activation_shard: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    batch_rows: int = 65536,
    sae_path: str | os.PathLike | None = None,
    compression: str = DEFAULT_COMPRESSION,
    metadata: dict | None = None,
    progress: bool = False,
) -> EncodeStats:
    """Encode every row of an activation shard; the code shard keeps the input's row order.

    sae: an SAE object, or the directory of a saved one (then recorded as its path; otherwise
    pass ``sae_path`` for the metadata). The shard is read ``batch_rows`` rows at a time and
    encoded on the SAE's device; memory is one batch of activations and codes.
    """
    sae, sae_path = _resolve_sae(sae, sae_path)
    start = time.perf_counter()
    source = shard_metadata(activation_shard)
    d_model = pq.read_schema(activation_shard).field("act").type.list_size
    if d_model != sae.cfg.d_model:
        raise ValueError(f"{activation_shard} holds d_model {d_model}; the SAE reads {sae.cfg.d_model}")
    schema = _code_shard_schema(sae, sae_path, source.get("layer"), source.get("model"), str(activation_shard),
                                metadata)
    stats = EncodeStats()
    parquet = pq.ParquetFile(activation_shard)
    bar = tqdm(total=parquet.metadata.num_rows, unit="res", unit_scale=True, desc="encoding",
               disable=not progress, mininterval=2.0)
    with parquet, ShardWriter(out_path, schema, compression, batch_rows) as writer:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=["seq_id", "pos", "act"]):
            tick = time.perf_counter()
            acts = read_acts(batch)
            # Arrow's buffers are read-only; float16 is widened (copied) anyway.
            acts = acts.astype(np.float32, copy=not acts.flags.writeable)
            idx, val = encode_rows(sae, torch.from_numpy(acts))
            stats.encode_seconds += time.perf_counter() - tick
            pos = batch.column("pos").to_numpy(zero_copy_only=False)
            writer.write(_code_batch(schema, batch.column("seq_id"), pos, idx, val))
            stats.add(idx, val, sae.cfg.n_latents)
            bar.update(batch.num_rows)
    bar.close()
    stats.total_seconds = time.perf_counter() - start
    return stats


def encode_from_model(
    model: ProteinLM,
    sae,
    layer: int,
    sequences: Sequence[tuple[str, str]],
    out_path: str | os.PathLike,
    *,
    max_tokens: int = 16384,
    sae_path: str | os.PathLike | None = None,
    compression: str = DEFAULT_COMPRESSION,
    row_group_rows: int = 65536,
    metadata: dict | None = None,
    progress: bool = False,
) -> EncodeStats:
    """Run ``model`` up to ``layer`` over ``sequences`` and write the codes of every residue.

    Rows follow the batches (length-sorted, longest first, as `cache_activations` writes them),
    each sequence's residues in order. Dense activations live only one batch at a time.
    """
    if not sequences:
        raise ValueError("no sequences to encode")
    sae, sae_path = _resolve_sae(sae, sae_path)
    if model.d_model != sae.cfg.d_model:
        raise ValueError(f"{model.name} has d_model {model.d_model}; the SAE reads {sae.cfg.d_model}")
    start = time.perf_counter()
    schema = _code_shard_schema(sae, sae_path, layer, model.describe(), None, metadata)
    lengths = [len(seq) for _, seq in sequences]
    stats = EncodeStats(n_sequences=0)
    bar = tqdm(total=sum(lengths), unit="res", unit_scale=True, desc="encoding", disable=not progress,
               mininterval=2.0)
    with ShardWriter(out_path, schema, compression, row_group_rows) as writer:
        for index_batch in token_budget_batches(lengths, max_tokens, specials=len(model.token_ids(""))):
            ids = [sequences[i][0] for i in index_batch]
            seqs = [sequences[i][1] for i in index_batch]
            tick = time.perf_counter()
            tokens = model.tokenize(seqs)
            # Boolean indexing is row-major: each sequence's residues, in order, row after row.
            x = model.hidden_states(tokens, [layer])[layer][tokens.residue_mask]
            stats.forward_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            idx, val = encode_rows(sae, x)
            stats.encode_seconds += time.perf_counter() - tick
            row_of_residue = np.repeat(np.arange(len(seqs), dtype=np.int32), [len(s) for s in seqs])
            seq_id = pa.DictionaryArray.from_arrays(pa.array(row_of_residue), pa.array(ids, pa.string()))
            pos = np.concatenate([np.arange(len(s), dtype=np.int32) for s in seqs])
            writer.write(_code_batch(schema, seq_id, pos, idx, val))
            stats.add(idx, val, sae.cfg.n_latents)
            stats.n_sequences += len(seqs)
            bar.update(len(pos))
    bar.close()
    stats.total_seconds = time.perf_counter() - start
    return stats


class Codes(NamedTuple):
    """The columns of a code shard: seq_id (n,) string array, pos (n,) int32, idx (n, k) int32,
    val (n, k) float32."""

    seq_id: pa.Array
    pos: np.ndarray
    idx: np.ndarray
    val: np.ndarray


def _codes_of(table_or_batch) -> Codes:
    seq_id = table_or_batch.column("seq_id")
    return Codes(
        seq_id.combine_chunks() if isinstance(seq_id, pa.ChunkedArray) else seq_id,
        table_or_batch.column("pos").to_numpy(),
        list_to_numpy(table_or_batch.column("idx")),
        list_to_numpy(table_or_batch.column("val")),
    )


def read_codes(path: str | os.PathLike) -> Codes:
    """A whole code shard in memory (see `Codes`)."""
    return _codes_of(pq.read_table(path))


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
