"""Projected cache sizes and the model width they need, for dry runs: no torch, pyarrow or
transformers here, since the workflow imports this module while it builds the DAG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def projected_cache_bytes(n_sequences: int, mean_length: float, d_model: int, storage_dtype: str = "float16",
                          positions_per_sequence: int | None = None) -> float:
    """Bytes of one layer's cache: tokens x d_model x element size (Parquet adds ~1-4%)."""
    tokens_per_sequence = mean_length if positions_per_sequence is None else min(positions_per_sequence, mean_length)
    element = np.dtype(storage_dtype).itemsize
    return n_sequences * tokens_per_sequence * d_model * element


# Published ESM-2 widths, for a dry run where the checkpoint is not at hand (e.g. a login node).
ESM2_WIDTHS = {"esm2_t6_8M": 320, "esm2_t12_35M": 480, "esm2_t30_150M": 640, "esm2_t33_650M": 1280,
               "esm2_t36_3B": 2560, "esm2_t48_15B": 5120}


def model_width(model: dict) -> int:
    """d_model of the config's ``model`` without loading it: known shapes, else the checkpoint's
    config.json (under ``path``, or in the Hugging Face hub cache), else the published ESM-2
    width its id names (1280 when it names none)."""
    if model["kind"] == "unirep":
        return model["size"]
    if model["kind"] == "tiny_esm2":
        return 32
    for path in _checkpoint_configs(model):
        return json.loads(path.read_text())["hidden_size"]
    return ESM2_WIDTHS.get("_".join(model["id"].split("/")[-1].split("_")[:3]), 1280)


def _checkpoint_configs(model: dict) -> list[Path]:
    if model.get("path"):
        return [path for path in [Path(model["path"]) / "config.json"] if path.exists()]
    hub = os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
    snapshots = Path(hub).expanduser() / f"models--{model['id'].replace('/', '--')}" / "snapshots"
    return sorted(snapshots.glob("*/config.json"))


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"

