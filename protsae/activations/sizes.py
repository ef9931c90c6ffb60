"""Projected cache sizes and the model shape they need, for dry runs: no torch, pyarrow or
transformers here, since the workflow imports this module while it builds the DAG.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def projected_cache_bytes(n_sequences: int, mean_length: float, d_model: int, storage_dtype: str = "float16",
                          positions_per_sequence: int | None = None) -> float:
    """Bytes of one layer's cache: tokens x d_model x element size (Parquet adds ~1-4%)."""
    tokens_per_sequence = mean_length if positions_per_sequence is None else min(positions_per_sequence, mean_length)
    element = np.dtype(storage_dtype).itemsize
    return n_sequences * tokens_per_sequence * d_model * element


# Published ESM-2 widths, for a dry run where the checkpoint is not at hand (e.g. a login node);
# the depth is in the name (t33 = 33 blocks) and every ESM-2 has 1026 positions.
ESM2_WIDTHS = {"esm2_t6_8M": 320, "esm2_t12_35M": 480, "esm2_t30_150M": 640, "esm2_t33_650M": 1280,
               "esm2_t36_3B": 2560, "esm2_t48_15B": 5120}
ESM2_POSITIONS = 1026
UNIREP_LAYERS = {64: 4, 256: 4, 1900: 1}
UNIREP_MAX_RESIDUES = 2000
TINY_ESM2 = {"hidden_size": 32, "num_hidden_layers": 3, "max_position_embeddings": 1026}
ANTIBERTY = {"hidden_size": 512, "num_hidden_layers": 8, "max_position_embeddings": 512}  # antiberty==0.1.3


@dataclass(frozen=True)
class ModelShape:
    """What the config check needs of a model, known without loading its weights (None: unknown
    until it is loaded, e.g. a model directory of UniRep weights)."""

    d_model: int
    n_layers: int | None
    max_residues: int | None


def model_shape(model: dict) -> ModelShape:
    """Width, depth (valid layers 0..n_layers) and longest accepted sequence of the config's
    ``model``: known shapes, else the checkpoint's config.json (under ``path``, or in the Hugging
    Face hub cache), else what the ESM-2 id names (width 1280 when it names none)."""
    if model["kind"] == "unirep":
        return ModelShape(model["size"], None if model.get("path") else UNIREP_LAYERS.get(model["size"]),
                          UNIREP_MAX_RESIDUES)
    if model["kind"] in ("tiny_esm2", "antiberty"):
        hf_config = TINY_ESM2 if model["kind"] == "tiny_esm2" else ANTIBERTY
    else:
        found = _checkpoint_configs(model)
        named = model.get("id") or model.get("path") or ""
        hf_config = json.loads(found[0].read_text()) if found else _esm2_by_name(named)
    positions = hf_config.get("max_position_embeddings")
    # BOS/CLS and EOS/SEP take two positions (protsae.models.hf); model.max_residues may lower it.
    limits = [n for n in (positions - 2 if positions else None, model.get("max_residues")) if n]
    max_residues = min(limits) if limits else None
    return ModelShape(hf_config.get("hidden_size", 1280), hf_config.get("num_hidden_layers"), max_residues)


def _esm2_by_name(model_id: str) -> dict:
    name = "_".join(str(model_id).rstrip("/").split("/")[-1].split("_")[:3])
    if name not in ESM2_WIDTHS:
        return {}
    return {"hidden_size": ESM2_WIDTHS[name], "num_hidden_layers": int(name.split("_")[1][1:]),
            "max_position_embeddings": ESM2_POSITIONS}


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

