"""The concept coverage figure (METHODS.md section 10): concepts covered (test F1 above the
cutoff) per layer, SAE latents against the raw residual dimensions, and across k and width.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from protsae.figures.style import SWEEP_AXES, save

PANEL_AXIS = {"per_layer": "layer", "k": "k", "width": "width"}
SAE_COLOUR, RAW_COLOUR = "#1f77b4", "#7f7f7f"


def _wilson(covered: np.ndarray, total: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of covered / total, as counts (the error bars)."""
    total = np.maximum(total, 1)
    p = covered / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half) * total, (centre + half) * total


def _bars(ax, x_labels, series, f1_cutoff):
    """Grouped bars of concepts covered, one group per x value, each series (label, colour, rows)."""
    width = 0.8 / len(series)
    positions = np.arange(len(x_labels))
    top = 1.0
    for number, (label, colour, rows) in enumerate(series):
        covered = rows["covered"].to_numpy(float)
        total = rows["concepts_evaluated"].to_numpy(float)
        low, high = _wilson(covered, total)
        offset = positions + (number - (len(series) - 1) / 2) * width
        ax.bar(offset, covered, width=width * 0.92, color=colour, label=label,
               yerr=[covered - low, high - covered], capsize=2, error_kw={"elinewidth": 0.8})
        top = max(top, float(high.max(initial=0)))
        # The stricter count: the unit chosen on valid too, not the best of all units on test.
        ax.bar(offset, rows["covered_by_valid_choice"].to_numpy(float), width=width * 0.5, color="none",
               edgecolor="black", hatch="////", linewidth=0.6,
               label="unit also chosen on valid" if number == len(series) - 1 else None)
    ax.set_xticks(positions, [str(v) for v in x_labels])
    ax.set_ylim(0, top * 1.4)  # room for the legend above the bars
    ax.set_ylabel(f"concepts covered (test F1 > {f1_cutoff:g})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def plot_concept_coverage(panels: list[tuple[str, pd.DataFrame]], raw: pd.DataFrame, path: str | os.PathLike,
                          title: str, f1_cutoff: float = 0.5) -> None:
    """One panel per (key, rows of the SAEs of its sweep): per layer with the raw dimensions'
    bars beside the SAEs' (``raw``: one row per layer), across k or width alone. Bars are
    concepts covered (some unit's test F1 above the cutoff, METHODS.md's count), with a 95% Wilson
    interval over the concepts evaluated, and hatched inside each the stricter count where the unit
    too is the one chosen on valid; the title of each panel gives how many were evaluated."""
    panels = [(key, rows) for key, rows in panels if not rows.empty]
    if not panels:
        raise ValueError("no SAEs to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, (key, rows) in zip(axes[0], panels):
        x = PANEL_AXIS[key]
        rows = rows.sort_values(x).reset_index(drop=True)
        series = [("SAE latents", SAE_COLOUR, rows)]
        if x == "layer" and not raw.empty:
            by_layer = raw.set_index("layer").reindex(rows["layer"]).reset_index()
            if by_layer["covered"].notna().all():
                series.append(("raw dimensions (each sign)", RAW_COLOUR, by_layer))
        _bars(ax, list(rows[x]), series, f1_cutoff)
        ax.set_xlabel(SWEEP_AXES[x])
        evaluated = sorted(set(rows["concepts_evaluated"]))
        fixed = [f"{d} = {rows[d].iloc[0]}" for d in SWEEP_AXES if d != x and rows[d].nunique() == 1]
        ax.set_title(f"{', '.join(fixed)}\n{'/'.join(map(str, evaluated))} concepts evaluated", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="upper left", ncols=2 if len(series) > 1 else 1)
    fig.suptitle(title, fontsize=11)
    save(fig, path)
