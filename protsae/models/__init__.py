"""Protein language models behind one interface (`ProteinLM`), built from a config block.

Config (``model:`` in config/*.yaml)::

    kind: unirep | esm2 | hf_masked_lm | tiny_esm2 | antiberty
    name: short name used in result paths
    id: hub id or local directory (esm2, hf_masked_lm)
    size: 64 | 256 | 1900 (unirep; or ``path`` to a model_weights.npz directory)
    device: auto | cpu | cuda
    autocast: none | bf16 | fp16 (GPU only; CPU always computes in float32)
"""

from __future__ import annotations

from protsae.device import resolve_device
from protsae.models.base import STANDARD_RESIDUES, LayerEdit, ProteinLM, TokenBatch
from protsae.models.hf import (
    HFMaskedLM,
    load_antiberty,
    load_hf_masked_lm,
    random_esm2,
    save_random_esm2,
    tiny_esm2,
)

__all__ = [
    "STANDARD_RESIDUES",
    "HFMaskedLM",
    "LayerEdit",
    "ProteinLM",
    "TokenBatch",
    "load_model",
    "model_alphabet",
    "random_esm2",
    "resolve_device",
    "save_random_esm2",
    "tiny_esm2",
]

# Residue letters with a token, per model kind, so the sequence stage can apply the alphabet
# policy without loading weights.
_ALPHABETS = {
    "esm2": frozenset(STANDARD_RESIDUES + "XBUZO"),
    "tiny_esm2": frozenset(STANDARD_RESIDUES + "XBUZO"),
    "unirep": frozenset(STANDARD_RESIDUES + "UOXZBJ"),
    "antiberty": frozenset(STANDARD_RESIDUES),
}


def model_alphabet(spec: dict) -> frozenset[str]:
    """Residue letters the configured model has tokens for (loads nothing for known kinds)."""
    if spec["kind"] in _ALPHABETS:
        return _ALPHABETS[spec["kind"]]
    return load_model(spec | {"device": "cpu"}).alphabet


def load_model(spec: dict) -> ProteinLM:
    """Build the model a config ``model:`` block describes, on its device, in eval mode."""
    kind = spec["kind"]
    name = spec.get("name")
    if kind == "unirep":
        from .unirep import UniRep

        model = UniRep.from_weights(size=spec.get("size", 256), path=spec.get("path"), name=name)
    elif kind in ("esm2", "hf_masked_lm"):
        model = load_hf_masked_lm(
            spec.get("path") or spec["id"],
            name=name,
            allow_download=spec.get("allow_download", False),
            max_residues=spec.get("max_residues"),
        )
    elif kind == "antiberty":
        model = load_antiberty(name=name)
    elif kind == "tiny_esm2":
        model = tiny_esm2(seed=spec.get("seed", 0))
        model.name = name or model.name
    else:
        raise ValueError(f"model.kind must be one of unirep, esm2, hf_masked_lm, tiny_esm2, antiberty; got {kind!r}")
    device = resolve_device(spec.get("device", "auto"))
    autocast = spec.get("autocast", "none") if device.type == "cuda" else None
    return model.to_device(device, autocast=autocast)
