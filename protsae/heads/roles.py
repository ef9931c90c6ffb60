"""A head's role from its offset profile and its OV circuit (METHODS.md section 12): previous- or
next-residue (attention at offset -1 / +1), periodic (offsets +-3/4, an alpha helix's turn; +-2,
a beta strand's alternation), copy (OV maps A's latents onto their own counterparts in B), other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ROLE_OFFSETS = {
    "previous": (-1,),
    "next": (1,),
    "periodic_helix": (-4, -3, 3, 4),
    "periodic_strand": (-2, 2),
}
ROLES = (*ROLE_OFFSETS, "copy", "other")


def offsets(window: int) -> list[int]:
    """Key offsets -window..window."""
    if window < max(abs(d) for offs in ROLE_OFFSETS.values() for d in offs):
        raise ValueError(f"heads.window is {window}; the roles need offsets up to 4")
    return list(range(-window, window + 1))


def role_masses(profile: Sequence[float], window: int) -> dict[str, float]:
    """Share of a window-normalised offset profile (offsets -window..window) at each role's
    offsets, and at offset 0 (``self``)."""
    at = dict(zip(offsets(window), np.asarray(profile, float)))
    masses = {role: float(sum(at[d] for d in offs)) for role, offs in ROLE_OFFSETS.items()}
    return masses | {"self": float(at[0])}


def positional_excess(heads, window: int, source: str = "predicted"):
    """Per row of a heads table (`block.analyse_block`), the largest share of a positional role
    above what a flat profile would give it (1/17 per offset for window 8): how positional a head
    is, comparable across roles of one and of four offsets."""
    n_offsets = 2 * window + 1
    return pd.concat([heads[f"{source}_{role}"] - len(offs) / n_offsets for role, offs in ROLE_OFFSETS.items()],
                     axis=1).max(axis=1)


def head_role(profile: Sequence[float], window: int, copy_score: float, min_share: float = 0.4,
              copy_min: float = 0.5) -> str:
    """The positional role holding the largest share of ``profile`` if it reaches ``min_share``;
    else ``copy`` if ``copy_score`` (share of source latents whose strongest OV target is their
    own match in B) reaches ``copy_min``; else ``other``."""
    masses = role_masses(profile, window)
    positional = {role: masses[role] for role in ROLE_OFFSETS}
    best = max(positional, key=positional.get)
    if positional[best] >= min_share:
        return best
    if copy_score >= copy_min:
        return "copy"
    return "other"
