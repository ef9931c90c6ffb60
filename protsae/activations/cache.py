"""Stage 2: one forward pass per batch writes every configured layer of a shard of sequences
as Parquet (optionally a seeded subset of residue positions per sequence).
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from protsae import __version__
from protsae.activations.batches import token_budget_batches
from protsae.activations.manifest import file_sha256
from protsae.activations.storage import (
    DEFAULT_ACT_LAYOUT,
    DEFAULT_COMPRESSION,
    FORMAT_VERSION,
    act_column,
    shard_schema,
)
from protsae.files import atomic_path, remove_stale_temporaries_of
from protsae.models import ProteinLM

log = logging.getLogger("protsae.activations")


def sample_positions(seq_id: str, length: int, n_positions: int | None, seed: int) -> np.ndarray:
    """Residue positions cached for one sequence: all, or a seeded random subset (sorted).

    The subset depends only on (seed, seq_id, length), never on batching or shard order.
    """
    if n_positions is None or n_positions >= length:
        return np.arange(length, dtype=np.int32)
    rng = np.random.default_rng([seed, zlib.crc32(seq_id.encode())])
    return np.sort(rng.choice(length, size=n_positions, replace=False)).astype(np.int32)


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
    act_layout: str = DEFAULT_ACT_LAYOUT,
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
    positions per sequence (None = all). act_layout: how ``act`` is stored (see
    `protsae.activations.storage`; the default writes fastest). All files appear together, or none does; the temporaries
    a killed earlier call left for these files are deleted first.
    """
    if not sequences:
        raise ValueError("no sequences to cache")
    layers = sorted(set(layers))
    if set(out_paths) != set(layers):
        raise ValueError(f"out_paths covers layers {sorted(out_paths)}, expected {layers}")
    for stale in remove_stale_temporaries_of(out_paths.values()):
        log.info("removed %s, left by an interrupted caching job", stale)
    base_metadata = {
        "protsae_format": FORMAT_VERSION,
        "protsae_version": __version__,
        "model": model.describe(),
        "d_model": model.d_model,
        "storage_dtype": storage_dtype,
        "act_layout": act_layout,
        "positions_per_sequence": positions_per_sequence,
        "position_seed": seed,
        **(metadata or {}),
    }
    schemas = {
        layer: shard_schema(model.d_model, storage_dtype, base_metadata | {"layer": layer}, act_layout)
        for layer in layers
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
                                   storage_dtype, act_layout, schemas)
            for layer, table in tables.items():
                writers[layer].write(table)
            stats.n_sequences += len(seqs)
            stats.n_residues += tokens.n_residues
            stats.padded_tokens += tokens.input_ids.numel()
            bar.update(tokens.n_residues)
    bar.close()
    stats.total_seconds = time.perf_counter() - start
    # The checksum is taken here, by the writer, once: the manifest and every reader check the
    # file against it, so nothing later can record an altered shard as good.
    # With each file's schema metadata, so the manifest is made from the stats files alone.
    for layer in layers:
        path = Path(out_paths[layer])
        stats.layers[layer] = {"path": str(path), "n_tokens": pq.ParquetFile(path).metadata.num_rows,
                               "bytes": path.stat().st_size, "sha256": file_sha256(path),
                               "metadata": base_metadata | {"layer": layer}}
    stats.n_tokens = stats.layers[layers[0]]["n_tokens"]
    return stats


def _batch_tables(ids, seqs, residue_mask, hidden, positions_per_sequence, seed, storage_dtype, act_layout,
                  schemas):
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
    torch_dtype = getattr(torch, storage_dtype)
    for layer, states in hidden.items():
        acts = states[rows.to(states.device), cols.to(states.device)].to(torch_dtype).cpu().numpy()
        out[layer] = pa.RecordBatch.from_arrays(
            [id_column, pos_column, act_column(acts, storage_dtype, act_layout)], schema=schemas[layer]
        )
    return out

