"""Projected cache sizes, for dry runs: no torch, pyarrow or transformers here, since the
workflow imports this module while it builds the DAG.
"""

from __future__ import annotations

import numpy as np


def projected_cache_bytes(n_sequences: int, mean_length: float, d_model: int, storage_dtype: str = "float16",
                          positions_per_sequence: int | None = None) -> float:
    """Bytes of one layer's cache: tokens x d_model x element size (Parquet adds ~1-4%)."""
    tokens_per_sequence = mean_length if positions_per_sequence is None else min(positions_per_sequence, mean_length)
    element = np.dtype(storage_dtype).itemsize
    return n_sequences * tokens_per_sequence * d_model * element


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"

