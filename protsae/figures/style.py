"""Shared figure helpers: axis labels of the swept quantities and the atomic PNG writer.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pandas as pd

from protsae.files import atomic_path

SWEEP_AXES = {"layer": "layer", "k": "k (latents active per token)", "width": "width (latents)"}


def save(fig, path: str | os.PathLike, rect: tuple[float, float, float, float] | None = None) -> None:
    """Lay out (within ``rect`` of the figure, to leave room for a figure legend) and write a PNG."""
    fig.tight_layout(rect=rect)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def categorical_axis(ax, rows: pd.DataFrame, x: str) -> list:
    values = list(rows[x])
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(SWEEP_AXES[x])
    return values

