"""Sparse latent codes of every residue of a dataset under many SAEs at once: from a cached
activation shard, read once for every SAE of its layer (`encode_cache_many`), or straight from
one forward pass of the model for every SAE of every layer asked for (`encode_model_many`), which
never stores the dense activations. `encode_cache` and `encode_from_model` do one SAE.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from contextlib import ExitStack
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from protsae import __version__
from protsae.activations.batches import token_budget_batches
from protsae.activations.cache import ShardWriter
from protsae.activations.storage import (
    column_width,
    list_column,
    read_acts,
    shard_metadata,
)
from protsae.codes.storage import DEFAULT_COMPRESSION, FORMAT_VERSION, code_schema
from protsae.models import ProteinLM
from protsae.sae.io import load_sae


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


CPU_CHUNK_BYTES = 16 << 20
"""Bytes of pre-activations (rows x n_latents float32) encoded at a time on CPU. glibc serves a
block above its mmap threshold (at most 32 MiB) with fresh pages the kernel faults in and zeroes
on every batch; chunks under it come from the heap and are reused. Codes are per row; the chunks
are of equal size, so none is a few rows long (the matmul of a few rows takes another kernel),
and on this machine's CPU the codes are the same bytes as in one pass (a test checks the
chunking; ``benchmarks/encode_chunks.py`` measures the time and compares the bytes). On GPU the
whole input is one chunk (CUDA's allocator caches its blocks)."""


@torch.no_grad()
def encode_rows(sae, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``x`` (n, d_model): idx (n, k) int32 and val (n, k) float32, each row ordered
    by value, largest first, ties by latent index (so codes do not depend on top-k internals).
    On CPU the rows are encoded `CPU_CHUNK_BYTES` of pre-activations at a time."""
    device, dtype = sae_placement(sae)
    x = x.to(device=device or x.device, dtype=dtype)
    rows = max(1, CPU_CHUNK_BYTES // (4 * sae.cfg.n_latents))
    if x.device.type != "cpu" or len(x) <= rows:
        return _encode_chunk(sae, x)
    # Chunks of equal size (within a row), never a short tail: a matmul of a few rows takes
    # another kernel, whose sums can differ in the last bit from the same rows in a larger batch.
    n_chunks = -(-len(x) // rows)
    rows = -(-len(x) // n_chunks)
    parts = [_encode_chunk(sae, x[start:start + rows]) for start in range(0, len(x), rows)]
    return np.concatenate([idx for idx, _ in parts]), np.concatenate([val for _, val in parts])


def _encode_chunk(sae, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    vals, idx = sae.encode(x)
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


@dataclass
class CodeTarget:
    """One SAE and the code shard its codes go to.

    sae: an SAE object, or the directory of a saved one (then recorded as its path; otherwise
    ``sae_path`` is what the code shard's metadata records).
    """

    sae: object
    out_path: str | os.PathLike
    sae_path: str | os.PathLike | None = None

    def resolved(self) -> "CodeTarget":
        sae, sae_path = _resolve_sae(self.sae, self.sae_path)
        return CodeTarget(sae, self.out_path, sae_path)


def _writers(stack: ExitStack, targets: Sequence[CodeTarget], layer: int, model: dict | None, source: str | None,
             compression: str, row_group_rows: int,
             metadata: dict | None) -> list[tuple[CodeTarget, ShardWriter, pa.Schema]]:
    """A code shard writer per target, entered on ``stack``: a failure leaves none of their files."""
    out = []
    for target in targets:
        schema = _code_shard_schema(target.sae, target.sae_path, layer, model, source, metadata)
        out.append((target, stack.enter_context(ShardWriter(target.out_path, schema, compression, row_group_rows)),
                    schema))
    return out


def _check_width(targets: Sequence[CodeTarget], d_model: int, what: str) -> None:
    for target in targets:
        if target.sae.cfg.d_model != d_model:
            raise ValueError(
                f"{what} has d_model {d_model}; the SAE {target.sae_path or ''} reads {target.sae.cfg.d_model}"
            )


def encode_cache_many(
    targets: Sequence[CodeTarget],
    activation_shard: str | os.PathLike,
    *,
    batch_rows: int = 65536,
    compression: str = DEFAULT_COMPRESSION,
    metadata: dict | None = None,
    progress: bool = False,
) -> list[EncodeStats]:
    """Encode every row of one activation shard under every SAE of ``targets`` (all of the shard's
    layer), reading the shard once; each code shard keeps the input's row order.

    The shard is read ``batch_rows`` rows at a time; memory is one batch of activations and its
    codes. A failure leaves no code shard behind. Returns one `EncodeStats` per target.
    """
    targets = [target.resolved() for target in targets]
    start = time.perf_counter()
    source = shard_metadata(activation_shard)
    _check_width(targets, column_width(pq.read_schema(activation_shard).field("act")), str(activation_shard))
    stats = [EncodeStats() for _ in targets]
    parquet = pq.ParquetFile(activation_shard)
    bar = tqdm(total=parquet.metadata.num_rows, unit="res", unit_scale=True, desc="encoding",
               disable=not progress, mininterval=2.0)
    with parquet, ExitStack() as stack:
        writers = _writers(stack, targets, source.get("layer"), source.get("model"), str(activation_shard),
                           compression, batch_rows, metadata)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=["seq_id", "pos", "act"]):
            acts = read_acts(batch)
            # Arrow's buffers are read-only; float16 is widened (copied) anyway.
            x = torch.from_numpy(acts.astype(np.float32, copy=not acts.flags.writeable))
            pos = batch.column("pos").to_numpy(zero_copy_only=False)
            for (target, writer, schema), target_stats in zip(writers, stats):
                tick = time.perf_counter()
                idx, val = encode_rows(target.sae, x)
                target_stats.encode_seconds += time.perf_counter() - tick
                writer.write(_code_batch(schema, batch.column("seq_id"), pos, idx, val))
                target_stats.add(idx, val, target.sae.cfg.n_latents)
            bar.update(batch.num_rows)
    bar.close()
    for target_stats in stats:
        target_stats.total_seconds = time.perf_counter() - start
    return stats


def encode_cache(sae, activation_shard: str | os.PathLike, out_path: str | os.PathLike, *,
                 sae_path: str | os.PathLike | None = None, **options) -> EncodeStats:
    """`encode_cache_many` for one SAE."""
    return encode_cache_many([CodeTarget(sae, out_path, sae_path)], activation_shard, **options)[0]


def encode_model_many(
    model: ProteinLM,
    targets: Mapping[int, Sequence[CodeTarget]],
    sequences: Sequence[tuple[str, str]],
    *,
    max_tokens: int = 16384,
    storage_dtype: str | None = None,
    compression: str = DEFAULT_COMPRESSION,
    row_group_rows: int = 65536,
    metadata: dict | None = None,
    progress: bool = False,
) -> dict[int, list[EncodeStats]]:
    """Run ``model`` once over ``sequences``, up to the deepest layer of ``targets`` ({layer: the
    SAEs of that layer}), and write the codes of every residue under every SAE.

    Batches are those `cache_activations` makes (length-sorted, longest first, under the same
    token budget), each sequence's residues in order, so with ``storage_dtype`` (the cache's
    dtype: activations are rounded to it before encoding, as a cache would store them) the codes
    equal, row for row and bit for bit, those encoded from a cache of the same sequences. Dense
    activations live one batch at a time; a failure leaves no code shard behind.
    """
    if not sequences:
        raise ValueError("no sequences to encode")
    targets = {layer: [target.resolved() for target in group] for layer, group in targets.items()}
    layers = sorted(targets)
    for group in targets.values():
        _check_width(group, model.d_model, model.name)
    start = time.perf_counter()
    lengths = [len(seq) for _, seq in sequences]
    stats = {layer: [EncodeStats(n_sequences=0) for _ in group] for layer, group in targets.items()}
    rounding = getattr(torch, storage_dtype) if storage_dtype else None
    forward_seconds = 0.0
    bar = tqdm(total=sum(lengths), unit="res", unit_scale=True, desc="encoding", disable=not progress,
               mininterval=2.0)
    with ExitStack() as stack:
        writers = {layer: _writers(stack, targets[layer], layer, model.describe(), None, compression, row_group_rows,
                                   metadata) for layer in layers}
        for index_batch in token_budget_batches(lengths, max_tokens):
            ids = [sequences[i][0] for i in index_batch]
            seqs = [sequences[i][1] for i in index_batch]
            tick = time.perf_counter()
            tokens = model.tokenize(seqs)
            hidden = model.hidden_states(tokens, layers)
            forward_seconds += time.perf_counter() - tick
            row_of_residue = np.repeat(np.arange(len(seqs), dtype=np.int32), [len(s) for s in seqs])
            seq_id = pa.DictionaryArray.from_arrays(pa.array(row_of_residue), pa.array(ids, pa.string()))
            pos = np.concatenate([np.arange(len(s), dtype=np.int32) for s in seqs])
            for layer in layers:
                # Boolean indexing is row-major: each sequence's residues, in order, row after row.
                x = hidden[layer][tokens.residue_mask]
                if rounding is not None:
                    x = x.to(rounding).float()
                for (target, writer, schema), target_stats in zip(writers[layer], stats[layer]):
                    tick = time.perf_counter()
                    idx, val = encode_rows(target.sae, x)
                    target_stats.encode_seconds += time.perf_counter() - tick
                    writer.write(_code_batch(schema, seq_id, pos, idx, val))
                    target_stats.add(idx, val, target.sae.cfg.n_latents)
                    target_stats.n_sequences += len(seqs)
            bar.update(len(pos))
    bar.close()
    for group in stats.values():
        for target_stats in group:
            target_stats.forward_seconds = forward_seconds
            target_stats.total_seconds = time.perf_counter() - start
    return stats


def encode_from_model(model: ProteinLM, sae, layer: int, sequences: Sequence[tuple[str, str]],
                      out_path: str | os.PathLike, *, sae_path: str | os.PathLike | None = None,
                      **options) -> EncodeStats:
    """`encode_model_many` for one SAE at one layer."""
    return encode_model_many(model, {layer: [CodeTarget(sae, out_path, sae_path)]}, sequences, **options)[layer][0]
