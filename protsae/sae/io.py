"""Loading an SAE from its directory (safetensors weights + JSON config, as `TopKSAE.save`
writes them) or from one of InterProt's published files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from protsae.sae.config import CONFIG_FILE, WEIGHTS_FILE
from protsae.sae.interprot import load_interprot
from protsae.sae.variants import TopKSAE


def load_sae(path: str | os.PathLike, device: torch.device | str = "cpu", k: int | None = None) -> TopKSAE:
    """Any SAE: a directory written by `save` (or its ``sae.safetensors``), whatever the variant,
    or an InterProt checkpoint file (`load_interprot`; ``k`` as there)."""
    path = Path(path)
    if path.is_dir():
        return TopKSAE.load(path, device=device)
    if path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).exists():
        return TopKSAE.load(path.parent, device=device)
    return load_interprot(path, k=k, device=device)

