"""Fig 6: fraction of residues unchanged against the steering multiplier, per conservation class
of the family alignment (paper Fig 6), for the family-specific latents and their random controls,
with and without the paper's filter; mean over latents with its standard error."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pandas as pd

from protsae.figures.style import save

CLASS_STYLE = {"identical": ("*", "#1b5e20"), "strong": (":", "#1976d2"), "weak": (".", "#f57c00"),
               "none": ("none", "#9e9e9e")}
LATENT_KEYS = ["variant", "layer", "k", "width", "kind", "latent", "steered_latent"]


def per_latent(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each (SAE, latent, kind) mean over its sequences, per multiplier and class."""
    return (metrics.groupby([*LATENT_KEYS, "multiplier", "conservation"], as_index=False)
            ["unchanged_vs_original"].mean())


def passing_filter(latents: pd.DataFrame, share: float) -> pd.DataFrame:
    """The family latents (with their controls) whose fraction unchanged at 0.5 exceeds ``share``."""
    half = latents[(latents["multiplier"] == 0.5) & (latents["conservation"] == "all") & (latents["kind"] == "family")]
    keep = half.loc[half["unchanged_vs_original"] > share, ["variant", "layer", "k", "width", "latent"]]
    return latents.merge(keep, on=["variant", "layer", "k", "width", "latent"])


def plot_steering(metrics: pd.DataFrame, path: str | os.PathLike, title: str, filter_share: float) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    latents = per_latent(metrics) if not metrics.empty else pd.DataFrame()
    panels = [(latents, "all steered latents", "no family-specific latent steered"),
              (passing_filter(latents, filter_share) if not latents.empty else latents,
               f"latents unchanged > {filter_share:.0%} at multiplier 0.5", "no latent passes the filter")]
    for ax, (table, label, empty) in zip(axes, panels):
        if table.empty:
            ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
        for kind, style in (("family", "-"), ("control", "--")):
            rows = table[table["kind"] == kind] if not table.empty else table
            n = len(rows[LATENT_KEYS].drop_duplicates()) if not rows.empty else 0
            for name, (symbol, colour) in CLASS_STYLE.items():
                cls = rows[rows["conservation"] == name] if not rows.empty else rows
                if cls.empty:
                    continue
                grouped = cls.groupby("multiplier")["unchanged_vs_original"]
                mean, sem = grouped.mean(), grouped.sem().fillna(0)
                ax.errorbar(mean.index, mean.to_numpy(), yerr=sem.to_numpy(), fmt=style, marker="o", ms=3,
                            capsize=2, color=colour, alpha=1.0 if kind == "family" else 0.45,
                            label=f"{'family' if kind == 'family' else 'random control'} ({n}), '{symbol}'")
        ax.set_title(label)
        ax.set_xlabel("multiplier (clamp = multiplier x base)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of residues unchanged\n(steered read-out vs original)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title)
    save(fig, path, rect=(0, 0.16, 1, 1))


