"""The activation shard format (METHODS.md sections 2 and 14): one row per cached residue,
``seq_id`` (string), ``pos`` (int32, 0-based residue index) and ``act``, with JSON schema metadata
that makes each shard self-describing; the readers return numpy arrays without per-row Python.

``act`` is stored one of two ways (``ACT_LAYOUTS``): ``fixed_size_binary[d_model x itemsize]``,
the row's values as raw little-endian bytes with the dtype and d_model in the field's metadata
(written since format 2), or ``fixed_size_list<float16 | float32>[d_model]`` (format 1, still
read). Parquet writes the binary layout 6-8x faster (0.09 against 0.62 GB/s for 145,530 x 256
float16 values, one thread; benchmarks/cache_throughput.py measures the caching stage with each),
since it has no per-value repetition levels to write; the bytes, and so the values, are the same.
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

FORMAT_VERSION = 2
"""1: ``act`` as fixed_size_list; 2: as fixed_size_binary (the layout is in every shard's metadata)."""


STORAGE_DTYPES = {"float16": (np.float16, pa.float16()), "float32": (np.float32, pa.float32())}
"""Storage dtype name -> (numpy dtype, Arrow type) of the ``act`` values."""


# Measured on the demo cache (benchmarks/cache_throughput.py): zstd and lz4 shrink float16
# activations by under 10% while writing slower, so shards are stored uncompressed by default.
DEFAULT_COMPRESSION = "none"

ACT_LAYOUTS = ("fixed_size_binary", "fixed_size_list")
DEFAULT_ACT_LAYOUT = "fixed_size_binary"


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


def binary_field(name: str, values_dtype: str, width: int) -> pa.Field:
    """A non-null fixed_size_binary[width x itemsize] field holding (width,) ``values_dtype`` rows,
    its dtype and width in the field's metadata."""
    itemsize = np.dtype(values_dtype).itemsize
    return pa.field(name, pa.binary(width * itemsize), nullable=False,
                    metadata={"dtype": values_dtype, "width": str(width)})


def binary_column(values: np.ndarray, values_dtype: str) -> pa.FixedSizeBinaryArray:
    """(n, width) array -> fixed_size_binary rows over the same (little-endian) buffer, no copy."""
    flat = np.ascontiguousarray(values, dtype=np.dtype(values_dtype).newbyteorder("<"))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(flat.shape[1] * flat.itemsize), len(flat),
                                                [None, pa.py_buffer(flat.reshape(-1))])


def column_width(field: pa.Field) -> int:
    """The number of values per row of a fixed_size_list or protsae fixed_size_binary field."""
    if pa.types.is_fixed_size_list(field.type):
        return field.type.list_size
    return int(_binary_meta(field)[1])


def _binary_meta(field: pa.Field) -> tuple[np.dtype, int]:
    meta = field.metadata or {}
    if not pa.types.is_fixed_size_binary(field.type) or b"dtype" not in meta or b"width" not in meta:
        raise ValueError(f"column {field.name!r} is {field.type} without protsae's dtype and width "
                         "metadata; expected fixed_size_list or fixed_size_binary written by protsae")
    dtype, width = np.dtype(meta[b"dtype"].decode()).newbyteorder("<"), int(meta[b"width"])
    if dtype.itemsize * width != field.type.byte_width:
        raise ValueError(f"column {field.name!r}: {width} x {dtype} values do not fill "
                         f"{field.type.byte_width} bytes")
    return dtype, width


def column_dtype(field: pa.Field) -> np.dtype:
    """The numpy dtype of the values of a fixed_size_list or protsae fixed_size_binary field."""
    if pa.types.is_fixed_size_list(field.type):
        return np.dtype(field.type.value_type.to_pandas_dtype())
    return _binary_meta(field)[0]


def column_to_numpy(table_or_batch, name: str) -> np.ndarray:
    """A fixed_size_list or protsae fixed_size_binary column as an (n, width) array, zero-copy
    where possible (one contiguous chunk)."""
    field = table_or_batch.schema.field(name)
    column = table_or_batch.column(name)
    if pa.types.is_fixed_size_list(field.type):
        return list_to_numpy(column)
    dtype, width = _binary_meta(field)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    data = column.buffers()[1]
    rows = np.frombuffer(data, dtype=np.uint8, count=len(column) * field.type.byte_width,
                         offset=column.offset * field.type.byte_width)
    return rows.view(dtype).reshape(len(column), width)


def act_field(d_model: int, storage_dtype: str, layout: str = DEFAULT_ACT_LAYOUT) -> pa.Field:
    """The ``act`` field of a shard in ``layout`` (one of ``ACT_LAYOUTS``)."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {storage_dtype!r}; expected one of {sorted(STORAGE_DTYPES)}")
    if layout == "fixed_size_binary":
        return binary_field("act", storage_dtype, d_model)
    if layout == "fixed_size_list":
        return pa.field("act", list_type(STORAGE_DTYPES[storage_dtype][1], d_model), nullable=False)
    raise ValueError(f"unknown act layout {layout!r}; expected one of {ACT_LAYOUTS}")


def act_column(acts: np.ndarray, storage_dtype: str = "float16",
               layout: str = DEFAULT_ACT_LAYOUT) -> pa.Array:
    """(n, d_model) activations -> the ``act`` column in ``storage_dtype`` and ``layout``."""
    if layout == "fixed_size_binary":
        return binary_column(acts, storage_dtype)
    return list_column(acts, STORAGE_DTYPES[storage_dtype][1])


def act_layout(field: pa.Field) -> str:
    """Which of ``ACT_LAYOUTS`` an ``act`` field is stored in."""
    return "fixed_size_list" if pa.types.is_fixed_size_list(field.type) else "fixed_size_binary"


def json_metadata(metadata: dict) -> dict[str, str]:
    """Schema metadata with JSON values, as every protsae shard stores it."""
    return {key: json.dumps(value) for key, value in metadata.items()}


def shard_metadata(path: str | Path) -> dict:
    """The decoded schema metadata of a protsae shard (activations or codes)."""
    meta = pq.read_schema(path).metadata or {}
    return {key.decode(): json.loads(value) for key, value in meta.items()}


def shard_schema(d_model: int, storage_dtype: str, metadata: dict,
                 layout: str = DEFAULT_ACT_LAYOUT) -> pa.Schema:
    return pa.schema(
        [
            pa.field("seq_id", pa.string(), nullable=False),
            pa.field("pos", pa.int32(), nullable=False),
            act_field(d_model, storage_dtype, layout),
        ],
        metadata=json_metadata({**metadata, "act_layout": layout}),
    )


def read_acts(table_or_batch) -> np.ndarray:
    """The ``act`` column of a table or record batch, in either layout, as an (n, d_model) array,
    zero-copy where possible."""
    return column_to_numpy(table_or_batch, "act")


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

