"""The code shard format (METHODS.md section 4).

A code shard holds one row per residue: ``seq_id`` (string), ``pos`` (int32, 0-based residue
index), ``idx`` (fixed_size_list<int32>[k], latent indices) and ``val``
(fixed_size_list<float32>[k], their activations), with the k entries of a row ordered by value,
largest first (ties by latent index). A TopK SAE may keep a latent whose activation is 0 after the
ReLU: such slots carry ``val == 0`` and mean "not active". The schema metadata (JSON values, as in
the activation shards) records the SAE, the layer, k, n_latents and, where known, the model.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protsae.activations.storage import (
    json_metadata,
    list_to_numpy,
    list_type,
)

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

