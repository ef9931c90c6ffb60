"""InterProt's published SAEs: their state-dict layout and file names, loaded as `TopKSAE` with
the weights as published (decoder columns normalised per output dimension; tokens standardised
before encoding).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from protsae.sae.config import SAEConfig
from protsae.sae.variants import TopKSAE

INTERPROT_NAME = re.compile(r"plm(?P<d_model>\d+)_l(?P<layer>\d+)_sae(?P<n_latents>\d+)(?:_k(?P<k>\d+))?")
"""InterProt's checkpoint names, e.g. ``esm2_plm1280_l24_sae4096_k64.safetensors``."""


def interprot_name_info(path: str | os.PathLike) -> dict:
    """``d_model``, ``layer``, ``n_latents`` and ``k`` (None where absent) parsed from an
    InterProt checkpoint name; empty when the name does not follow their pattern."""
    match = INTERPROT_NAME.search(Path(path).name)
    if not match:
        return {}
    return {key: int(value) if value is not None else None for key, value in match.groupdict().items()}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a PyTorch Lightning checkpoint of InterProt's training module
        state = {name.removeprefix("sae_model."): t for name, t in state["state_dict"].items()}
    return state


def load_interprot(path: str | os.PathLike, k: int | None = None, device: torch.device | str = "cpu") -> TopKSAE:
    """A `TopKSAE` holding an SAE saved by InterProt's code (``SparseAutoencoder`` of their
    ``sae_model.py``): a safetensors, ``.pt`` or Lightning ``.ckpt`` state dict with ``w_enc``
    ``(d_model, d_hidden)``, ``w_dec`` ``(d_hidden, d_model)``, ``b_enc``, ``b_pre``.

    Their forward standardises each token (``LN``: mean, unbiased std + 1e-5), subtracts
    ``b_pre``, keeps the top k of ``x @ w_enc + b_enc`` with a ReLU, decodes with
    ``z @ w_dec + b_pre`` and maps back with ``* std + mean``; the returned SAE has
    ``standardize_tokens`` set and ``input_scale`` 1 to match. Weights are kept as published
    (their decoder is normalised per output dimension, not per latent, and is not renormalised).
    ``k`` defaults to the ``_k<k>`` of the file name; shapes give d_model and the width.
    """
    path = Path(path)
    state = _read_state_dict(path)
    missing = {"w_enc", "w_dec", "b_enc", "b_pre"} - state.keys()
    if missing:
        raise ValueError(f"{path}: not an InterProt SAE state dict (missing {sorted(missing)})")
    d_model, n_latents = state["w_enc"].shape
    if state["w_dec"].shape != (n_latents, d_model):
        raise ValueError(f"{path}: w_dec is {tuple(state['w_dec'].shape)}, expected {(n_latents, d_model)}")
    info = interprot_name_info(path)
    k = k if k is not None else info.get("k")
    if k is None:
        raise ValueError(f"{path}: the file name gives no k (…_k64…); pass k")
    for key, value in (("d_model", d_model), ("n_latents", n_latents)):
        if info.get(key) not in (None, value):
            raise ValueError(f"{path}: the name says {key}={info[key]}, the weights {value}")
    cfg = SAEConfig(d_model=d_model, n_latents=n_latents, k=k, normalize_input=False, standardize_tokens=True)
    sae = TopKSAE(cfg, device=device)
    with torch.no_grad():
        sae.W_enc.copy_(state["w_enc"].t())
        sae.W_dec.copy_(state["w_dec"])
        sae.b_enc.copy_(state["b_enc"])
        sae.b_pre.copy_(state["b_pre"])
    sae.source = {"format": "interprot", "path": str(path), **info, "k": k}
    return sae

