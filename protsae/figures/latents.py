"""The latent figures (paper Figs 3c, 3d, 7a, 7b): activation-pattern mix and family-specific
latents per SAE of a sweep.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from protsae.figures.style import SWEEP_AXES, categorical_axis, save
from protsae.latents.patterns import REPORT_ORDER

# Table 2's classes in the order the stacked bars show them, with the two "no verdict" classes last.
PATTERN_STYLE = {  # class: (legend label, colour), for each class of REPORT_ORDER
    "point": ("point", "#1f77b4"),
    "periodic": ("periodic", "#9467bd"),
    "motif_short": ("motif, short (<20)", "#2ca02c"),
    "motif_medium": ("motif, medium (20-50)", "#98df8a"),
    "motif_long": ("motif, long (50-300)", "#bcbd22"),
    "whole": ("whole protein", "#ff7f0e"),
    "other": ("other", "#8c564b"),
    "not_enough_data": ("not enough data", "#c7c7c7"),
    "dead": ("dead on test set", "#7f7f7f"),
}


def _pattern_bars(ax, rows: pd.DataFrame, x: str) -> None:
    """Stacked bars: share of each SAE's latents in each pattern class (columns ``pattern_<class>``)."""
    categorical_axis(ax, rows, x)
    counts = rows[[f"pattern_{name}" for name in REPORT_ORDER]].to_numpy(dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    bottom = np.zeros(len(rows))
    for column, name in enumerate(REPORT_ORDER):
        label, colour = PATTERN_STYLE[name]
        ax.bar(range(len(rows)), shares[:, column], bottom=bottom, color=colour, label=label, width=0.7)
        bottom += shares[:, column]
    ax.set_ylabel("share of latents")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _family_bars(ax, rows: pd.DataFrame, x: str, f1_cutoff: float, types_label: str) -> None:
    """Bars: family-specific latents per SAE, annotated with their share of all latents, with the
    bootstrap interval of the count (columns n_family_specific_low / _high) as error bars where
    the summaries carry it."""
    categorical_axis(ax, rows, x)
    count = rows["n_family_specific"].to_numpy(dtype=float)
    yerr = None
    if {"n_family_specific_low", "n_family_specific_high"} <= set(rows.columns):
        low = rows["n_family_specific_low"].to_numpy(dtype=float)
        high = rows["n_family_specific_high"].to_numpy(dtype=float)
        yerr = np.nan_to_num(np.vstack([count - low, high - count]).clip(min=0))
    bars = ax.bar(range(len(rows)), count, color="#1f77b4", width=0.7, yerr=yerr, capsize=3,
                  error_kw={"elinewidth": 1, "ecolor": "#333333"})
    top = count if yerr is None else count + yerr[1]
    # The share sits above the error bar, where there is one.
    for bar, n_specific, total, height in zip(bars, count, rows["n_latents"], top):
        ax.annotate(f"{100 * n_specific / total:.1f}%", (bar.get_x() + bar.get_width() / 2, height),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel(f"family-specific latents\n(test F1 > {f1_cutoff}, {types_label})")
    ax.set_ylim(0, max(1, top.max()) * 1.18)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def plot_latent_figure(rows: pd.DataFrame, kinds: list[str], x: str, path: str | os.PathLike, title: str,
                       f1_cutoff: float = 0.7, types_label: str = "InterPro Family") -> None:
    """One latent figure: per SAE of a sweep (one row each, sorted by ``x``), the family-specific
    latent count (``"family"``) and/or the pattern-class mix (``"patterns"``), side by side."""
    if rows.empty:
        raise ValueError("no SAEs to plot")
    rows = rows.sort_values(x).reset_index(drop=True)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds) + (2.2 if "patterns" in kinds else 0), 3.8),
                             squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        if kind == "family":
            _family_bars(ax, rows, x, f1_cutoff, types_label)
        else:
            _pattern_bars(ax, rows, x)
    fixed = [f"{d} = {rows[d].iloc[0]}" for d in SWEEP_AXES if d != x and rows[d].nunique() == 1]
    fig.suptitle(f"{title} ({', '.join(fixed)})" if fixed else title, fontsize=11)
    save(fig, path)

