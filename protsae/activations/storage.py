"""The activation shard format (METHODS.md section 2): one row per cached residue, ``seq_id``
(string), ``pos`` (int32, 0-based residue index) and ``act`` (fixed_size_list<float16 or
float32>[d_model]), with JSON schema metadata that makes each shard self-describing; the readers
return numpy arrays without per-row Python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMAT_VERSION = 1


STORAGE_DTYPES = {"float16": (np.float16, pa.float16()), "float32": (np.float32, pa.float32())}
"""Storage dtype name -> (numpy dtype, Arrow type) of the ``act`` values."""


# Measured on the demo cache (benchmarks/cache_throughput.py): zstd and lz4 shrink float16
# activations by under 10% while writing slower, so shards are stored uncompressed by default.
DEFAULT_COMPRESSION = "none"


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
    return list_column(acts, STORAGE_DTYPES[storage_dtype][1])


def json_metadata(metadata: dict) -> dict[str, str]:
    """Schema metadata with JSON values, as every protsae shard stores it."""
    return {key: json.dumps(value) for key, value in metadata.items()}


def shard_metadata(path: str | Path) -> dict:
    """The decoded schema metadata of a protsae shard (activations or codes)."""
    meta = pq.read_schema(path).metadata or {}
    return {key.decode(): json.loads(value) for key, value in meta.items()}


def shard_schema(d_model: int, storage_dtype: str, metadata: dict) -> pa.Schema:
    arrow_type = STORAGE_DTYPES[storage_dtype][1]
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

