"""Sparse latent codes of every residue of a dataset under one SAE: from a cached activation
shard (`encode_cache`) or straight from the model (`encode_from_model`), which never stores the
dense activations.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from protsae import __version__
from protsae.activations.batches import token_budget_batches
from protsae.activations.cache import ShardWriter
from protsae.activations.storage import (
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

