"""Residual-stream activations, cached as Parquet shards (METHODS.md section 2).

One forward pass per batch writes every configured layer. A shard holds one row per cached
residue: ``seq_id`` (string), ``pos`` (int32, 0-based residue index) and ``act``
(fixed_size_list<float16 or float32>[d_model]).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from . import __version__
from .models import ProteinLM
from .utils import atomic_path, write_json

log = logging.getLogger("protsae.activations")

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float16": (np.float16, torch.float16, pa.float16()), "float32": (np.float32, torch.float32, pa.float32())}
# Measured on the demo cache (benchmarks/cache_throughput.py): zstd and lz4 shrink float16
# activations by under 10% while writing slower, so shards are stored uncompressed by default.
DEFAULT_COMPRESSION = "none"


def token_budget_batches(lengths: Sequence[int], max_tokens: int, specials: int = 2) -> list[list[int]]:
    """Group sequence indices into batches whose padded size fits ``max_tokens``.

    Sequences are taken longest first, so each batch holds sequences of similar length (little
    padding) and an out-of-memory batch, if any, comes first rather than after hours.
    The padded size of a batch is ``n_sequences * (longest + specials)``.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] + specials if current else lengths[index] + specials
        if current and (len(current) + 1) * width > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def random_batches(n_sequences: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Random-order fixed-size batches: the naive baseline the benchmark compares against."""
    order = np.random.default_rng(seed).permutation(n_sequences).tolist()
    return [order[i : i + batch_size] for i in range(0, n_sequences, batch_size)]


def sample_positions(seq_id: str, length: int, n_positions: int | None, seed: int) -> np.ndarray:
    """Residue positions cached for one sequence: all, or a seeded random subset (sorted).

    The subset depends only on (seed, seq_id, length), never on batching or shard order.
    """
    if n_positions is None or n_positions >= length:
        return np.arange(length, dtype=np.int32)
    rng = np.random.default_rng([seed, zlib.crc32(seq_id.encode())])
    return np.sort(rng.choice(length, size=n_positions, replace=False)).astype(np.int32)


def list_type(arrow_type: pa.DataType, width: int) -> pa.FixedSizeListType:
    """fixed_size_list<arrow_type>[width] with non-null elements.

    Declaring the elements (and the columns, see ``shard_schema``) non-null lets Parquet skip most
    of the definition levels it otherwise writes per value: float16 shards write 1.6x faster
    (0.20 -> 0.32 GB/s for 51,200 x 256 values on 2 cores) and read back the same.
    """
    return pa.list_(pa.field("element", arrow_type, nullable=False), width)


def list_column(values: np.ndarray, arrow_type: pa.DataType) -> pa.FixedSizeListArray:
    """(n, width) array -> ``list_type(arrow_type, width)`` over the same buffer (no copy, no
    per-row work; ``pa.array`` would convert float16 element by element)."""
    flat = np.ascontiguousarray(values, dtype=arrow_type.to_pandas_dtype()).reshape(-1)
    child = pa.Array.from_buffers(arrow_type, len(flat), [None, pa.py_buffer(flat)])
    return pa.FixedSizeListArray.from_arrays(child, type=list_type(arrow_type, values.shape[1]))


def list_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed_size_list column as an (n, list_size) array, zero-copy where possible."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # flatten() honours a slice offset, unlike .values.
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)


def act_column(acts: np.ndarray, storage_dtype: str = "float16") -> pa.FixedSizeListArray:
    """(n, d_model) activations -> the ``act`` column in ``storage_dtype``."""
    return list_column(acts, STORAGE_DTYPES[storage_dtype][2])


def json_metadata(metadata: dict) -> dict[str, str]:
    """Schema metadata with JSON values, as every protsae shard stores it."""
    return {key: json.dumps(value) for key, value in metadata.items()}


def shard_metadata(path: str | Path) -> dict:
    """The decoded schema metadata of a protsae shard (activations or codes)."""
    meta = pq.read_schema(path).metadata or {}
    return {key.decode(): json.loads(value) for key, value in meta.items()}


def shard_schema(d_model: int, storage_dtype: str, metadata: dict) -> pa.Schema:
    arrow_type = STORAGE_DTYPES[storage_dtype][2]
    return pa.schema(
        [
            pa.field("seq_id", pa.string(), nullable=False),
            pa.field("pos", pa.int32(), nullable=False),
            pa.field("act", list_type(arrow_type, d_model), nullable=False),
        ],
        metadata=json_metadata(metadata),
    )


def read_acts(table_or_batch) -> np.ndarray:
    """The ``act`` column of a table or record batch as an (n, d_model) array, zero-copy where possible."""
    return list_to_numpy(table_or_batch.column("act"))


def shard_batches(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    columns: Sequence[str],
    index_of: Mapping[str, int],
    batch_rows: int,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Record batches (``seq_id`` and ``columns``) of one or more protsae shards, activations or
    codes, in order, each with the index in ``index_of`` of every row's seq_id ((rows,) int64;
    -1 for proteins it does not hold)."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=["seq_id", *columns]):
                encoded = pc.dictionary_encode(batch.column("seq_id"))
                # One dictionary look-up per protein of the batch, not per row.
                lookup = np.array([index_of.get(seq_id, -1) for seq_id in encoded.dictionary.to_pylist()],
                                  dtype=np.int64)
                yield batch, lookup[encoded.indices.to_numpy(zero_copy_only=False)]


@dataclass
class CacheStats:
    """What one caching job did, for its log and the per-layer manifest."""

    n_sequences: int = 0
    n_residues: int = 0
    n_tokens: int = 0
    padded_tokens: int = 0
    forward_seconds: float = 0.0
    total_seconds: float = 0.0
    layers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            **{k: v for k, v in self.__dict__.items() if k != "layers"},
            "residues_per_second": self.n_residues / max(self.total_seconds, 1e-9),
            "padding_share": 1 - self.n_residues / max(self.padded_tokens, 1),
            "layers": self.layers,
        }


class ShardWriter:
    """A ParquetWriter over a temporary file, renamed onto ``path`` only when the block succeeds
    (an exception, also one from the last flush, deletes it). Record batches are gathered into
    row groups of ``row_group_rows``.

    Batches are encoded in the caller's thread: on 2 cores a background writer thread fought
    torch's threads and did not beat inline writing (benchmarks/cache_throughput.py).
    """

    def __init__(self, path: str | Path, schema: pa.Schema, compression: str, row_group_rows: int):
        self._stack = ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_path(path))
            self._writer = self._stack.enter_context(
                pq.ParquetWriter(
                    tmp,
                    schema,
                    compression=compression,
                    # Dictionary-encoding or min/max statistics on the list columns slow writing
                    # and reading several-fold for nothing.
                    use_dictionary=["seq_id"],
                    write_statistics=["seq_id", "pos"],
                )
            )
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending), row_group_size=1 << 30)
        self._pending, self._pending_rows = [], 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            try:
                self._flush()
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        self._stack.__exit__(*exc_info)


def cache_activations(
    model: ProteinLM,
    sequences: Sequence[tuple[str, str]],
    layers: Sequence[int],
    out_paths: dict[int, str | Path],
    *,
    max_tokens: int = 16384,
    storage_dtype: str = "float16",
    positions_per_sequence: int | None = None,
    seed: int = 0,
    compression: str = DEFAULT_COMPRESSION,
    row_group_rows: int = 65536,
    metadata: dict | None = None,
    progress: bool = True,
) -> CacheStats:
    """Run ``model`` over ``sequences`` once and write every layer in ``layers`` to its shard.

    sequences: (seq_id, residues) pairs. out_paths: {layer: parquet path}. max_tokens: padded
    token budget per batch. positions_per_sequence: cache a seeded random subset of residue
    positions per sequence (None = all). All files appear together, or none does.
    """
    if not sequences:
        raise ValueError("no sequences to cache")
    layers = sorted(set(layers))
    if set(out_paths) != set(layers):
        raise ValueError(f"out_paths covers layers {sorted(out_paths)}, expected {layers}")
    base_metadata = {
        "protsae_format": FORMAT_VERSION,
        "protsae_version": __version__,
        "model": model.describe(),
        "d_model": model.d_model,
        "storage_dtype": storage_dtype,
        "positions_per_sequence": positions_per_sequence,
        "position_seed": seed,
        **(metadata or {}),
    }
    schemas = {
        layer: shard_schema(model.d_model, storage_dtype, base_metadata | {"layer": layer}) for layer in layers
    }
    lengths = [len(seq) for _, seq in sequences]
    batches = token_budget_batches(lengths, max_tokens)
    stats = CacheStats()
    start = time.perf_counter()
    bar = tqdm(total=sum(lengths), unit="res", unit_scale=True, desc="caching", disable=not progress,
               mininterval=2.0)
    with ExitStack() as stack:
        writers = {
            layer: stack.enter_context(ShardWriter(out_paths[layer], schemas[layer], compression, row_group_rows))
            for layer in layers
        }
        for index_batch in batches:
            ids = [sequences[i][0] for i in index_batch]
            seqs = [sequences[i][1] for i in index_batch]
            tick = time.perf_counter()
            tokens = model.tokenize(seqs)
            hidden = model.hidden_states(tokens, layers)
            stats.forward_seconds += time.perf_counter() - tick
            tables = _batch_tables(ids, seqs, tokens.residue_mask, hidden, positions_per_sequence, seed,
                                   storage_dtype, schemas)
            for layer, table in tables.items():
                writers[layer].write(table)
            stats.n_sequences += len(seqs)
            stats.n_residues += tokens.n_residues
            stats.padded_tokens += tokens.input_ids.numel()
            bar.update(tokens.n_residues)
    bar.close()
    stats.total_seconds = time.perf_counter() - start
    for layer in layers:
        n_rows = pq.ParquetFile(out_paths[layer]).metadata.num_rows
        stats.layers[layer] = {"path": str(out_paths[layer]), "n_tokens": n_rows}
    stats.n_tokens = stats.layers[layers[0]]["n_tokens"]
    return stats


def _batch_tables(ids, seqs, residue_mask, hidden, positions_per_sequence, seed, storage_dtype, schemas):
    """Per-layer record batches of the cached residues of one model batch."""
    mask = residue_mask.cpu()
    # Column i + 1 holds residue i; keep the sampled residue columns of every row, in row order.
    positions = [sample_positions(seq_id, len(seq), positions_per_sequence, seed) for seq_id, seq in zip(ids, seqs)]
    row_of_token = np.concatenate([np.full(len(pos), row, dtype=np.int32) for row, pos in enumerate(positions)])
    positions = np.concatenate(positions)
    rows = torch.from_numpy(row_of_token).long()
    cols = torch.from_numpy(positions + 1).long()
    assert bool(mask[rows, cols].all()), "cached a non-residue position"
    id_column = pa.DictionaryArray.from_arrays(pa.array(row_of_token), pa.array(ids)).cast(pa.string())
    pos_column = pa.array(positions, pa.int32())
    out = {}
    torch_dtype = STORAGE_DTYPES[storage_dtype][1]
    for layer, states in hidden.items():
        acts = states[rows.to(states.device), cols.to(states.device)].to(torch_dtype).cpu().numpy()
        out[layer] = pa.RecordBatch.from_arrays(
            [id_column, pos_column, act_column(acts, storage_dtype)], schema=schemas[layer]
        )
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(shard_paths: Sequence[str | Path], stats_paths: Sequence[str | Path], layer: int,
                   out_path: str | Path, dataset: str) -> dict:
    """Manifest of one (dataset, layer) cache: model, layer, dtype, counts, per-shard checksums."""
    shards = []
    model = d_model = storage_dtype = positions = None
    for shard_path, stats_path in zip(shard_paths, stats_paths):
        parquet = pq.ParquetFile(shard_path)
        meta = shard_metadata(shard_path)
        if meta["layer"] != layer:
            raise ValueError(f"{shard_path} holds layer {meta['layer']}, expected {layer}")
        if model is None:
            model, d_model = meta["model"], meta["d_model"]
            storage_dtype, positions = meta["storage_dtype"], meta["positions_per_sequence"]
        elif meta["model"] != model:
            raise ValueError(f"{shard_path} was cached with a different model than {shard_paths[0]}")
        job = json.loads(Path(stats_path).read_text())
        shards.append({
            "path": str(shard_path),
            "sha256": file_sha256(shard_path),
            "bytes": Path(shard_path).stat().st_size,
            "n_tokens": parquet.metadata.num_rows,
            "n_sequences": job["n_sequences"],
            "n_residues": job["n_residues"],
        })
    manifest = {
        "dataset": dataset,
        "layer": layer,
        "model": model,
        "d_model": d_model,
        "storage_dtype": storage_dtype,
        "positions_per_sequence": positions,
        "n_shards": len(shards),
        "n_tokens": sum(s["n_tokens"] for s in shards),
        "n_sequences": sum(s["n_sequences"] for s in shards),
        "n_residues": sum(s["n_residues"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "protsae_version": __version__,
        "shards": shards,
    }
    write_json(out_path, manifest)
    return manifest


def verify_manifest(manifest_path: str | Path) -> None:
    """Raise if any shard listed in a manifest is missing or altered."""
    manifest = json.loads(Path(manifest_path).read_text())
    for shard in manifest["shards"]:
        if file_sha256(shard["path"]) != shard["sha256"]:
            raise ValueError(f"{shard['path']} does not match the checksum in {manifest_path}")


def projected_cache_bytes(n_sequences: int, mean_length: float, d_model: int, storage_dtype: str = "float16",
                          positions_per_sequence: int | None = None) -> float:
    """Bytes of one layer's cache: tokens x d_model x element size (Parquet adds ~1-4%)."""
    tokens_per_sequence = mean_length if positions_per_sequence is None else min(positions_per_sequence, mean_length)
    element = np.dtype(STORAGE_DTYPES[storage_dtype][0]).itemsize
    return n_sequences * tokens_per_sequence * d_model * element


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
