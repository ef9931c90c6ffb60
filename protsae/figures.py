"""Figures: matplotlib, one function per figure, each writing a PNG atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .stats import gini  # noqa: E402
from .utils import atomic_path  # noqa: E402

SWEEP_AXES = {"layer": "layer", "k": "k (latents active per token)", "width": "width (latents)"}
SAE_METRICS = {  # column: (axis label, lower limit or None)
    "heldout_fvu": ("FVU (held-out)", 0.0),
    "delta_ce": ("delta CE (nats / token)", None),
    "loss_recovered": ("loss recovered", None),
    "dead_share": ("share of dead latents", 0.0),
}


def sweep_rows(table: pd.DataFrame, sweep: dict) -> pd.DataFrame:
    """The rows of an SAE summary table that belong to one config sweep (a layers x k x width grid)."""
    variant = sweep.get("variant", "topk")
    mask = (
        table["layer"].isin(sweep["layers"])
        & table["k"].isin(sweep["k"])
        & table["width"].isin(sweep["width"])
        & (table["variant"] == variant)
    )
    return table[mask]


def plot_sae_sweep(table: pd.DataFrame, sweep: dict, path: str | os.PathLike, title: str) -> None:
    """Metrics of one sweep's SAEs against the swept quantity (layer, k or width).

    The x axis is the swept dimension with the most values; a second swept dimension, if any,
    gives one line per value. Metrics missing from the table (e.g. delta CE not computed) are
    left out.
    """
    rows = sweep_rows(table, sweep)
    if rows.empty:
        raise ValueError(f"no SAEs of sweep {sweep.get('name')!r} in the summary table")
    varying = sorted((d for d in SWEEP_AXES if rows[d].nunique() > 1), key=lambda d: -rows[d].nunique())
    x = varying[0] if varying else "layer"
    hue = varying[1] if len(varying) > 1 else None
    metrics = [m for m in SAE_METRICS if m in rows and rows[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    groups = rows.groupby(hue) if hue else [(None, rows)]
    for ax, metric in zip(axes[0], metrics):
        label, lower = SAE_METRICS[metric]
        for value, group in groups:
            group = group.sort_values(x)
            ax.plot(group[x], group[metric], marker="o", label=f"{hue} = {value}" if hue else None)
        ax.set_xlabel(SWEEP_AXES[x])
        ax.set_ylabel(label)
        if lower is not None:
            ax.set_ylim(bottom=lower, top=max(ax.get_ylim()[1], 0.05))
        if x in ("k", "width"):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(rows[x].unique()), [str(v) for v in sorted(rows[x].unique())])
        else:
            ax.set_xticks(sorted(rows[x].unique()))
        ax.grid(alpha=0.3)
        if hue:
            ax.legend(fontsize=8)
    fixed = [f"{d} = {rows[d].iloc[0]}" for d in SWEEP_AXES if d not in varying]
    fig.suptitle(f"{title}: {', '.join(fixed)}" if fixed else title)
    _save(fig, path)


# -- latent characterisation (Figs 3c, 3d, 7a, 7b) ------------------------------------------------

# Table 2's classes in the order the stacked bars show them, with the two "no verdict" classes last.
PATTERN_CLASSES = {  # class: (legend label, colour)
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


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def _categorical_axis(ax, rows: pd.DataFrame, x: str) -> list:
    values = list(rows[x])
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(SWEEP_AXES[x])
    return values


def _pattern_bars(ax, rows: pd.DataFrame, x: str) -> None:
    """Stacked bars: share of each SAE's latents in each pattern class (columns ``pattern_<class>``)."""
    _categorical_axis(ax, rows, x)
    counts = rows[[f"pattern_{name}" for name in PATTERN_CLASSES]].to_numpy(dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    bottom = np.zeros(len(rows))
    for column, (name, (label, colour)) in enumerate(PATTERN_CLASSES.items()):
        ax.bar(range(len(rows)), shares[:, column], bottom=bottom, color=colour, label=label, width=0.7)
        bottom += shares[:, column]
    ax.set_ylabel("share of latents")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _family_bars(ax, rows: pd.DataFrame, x: str, f1_cutoff: float, types_label: str) -> None:
    """Bars: family-specific latents per SAE, annotated with their share of all latents."""
    _categorical_axis(ax, rows, x)
    bars = ax.bar(range(len(rows)), rows["n_family_specific"], color="#1f77b4", width=0.7)
    for bar, count, total in zip(bars, rows["n_family_specific"], rows["n_latents"]):
        ax.annotate(f"{100 * count / total:.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel(f"family-specific latents\n(test F1 > {f1_cutoff}, {types_label})")
    ax.set_ylim(0, max(1, rows["n_family_specific"].max()) * 1.18)
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
    _save(fig, path)


# -- probes (Figs 4 and 9) ------------------------------------------------------------------------

METRIC_LABELS = {"accuracy": "test accuracy", "spearman": "test Spearman rho"}


def plot_probe_layers(rows: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """Fig 4: per task (one panel each), the probe's test metric per layer, raw activations vs
    SAE latents. rows: task, layer, kind (``raw`` or ``sae``), metric, test_score, label (legend
    text of the kind)."""
    if rows.empty:
        raise ValueError("no probe results to plot")
    tasks = sorted(rows["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        task_rows = rows[rows["task"] == task]
        for (kind, label), group in task_rows.groupby(["kind", "label"]):
            group = group.sort_values("layer")
            ax.plot(group["layer"], group["test_score"], marker="o" if kind == "raw" else "s", label=label)
        ax.set_xticks(sorted(task_rows["layer"].unique()))
        ax.set_xlabel("layer")
        ax.set_ylabel(METRIC_LABELS.get(task_rows["metric"].iloc[0], task_rows["metric"].iloc[0]))
        ax.set_title(task.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def plot_probe_coefficients(coefs: dict[str, dict[str, np.ndarray]], path: str | os.PathLike, title: str) -> None:
    """Fig 9: per task (one panel each), the distribution of the probe's standardised coefficients
    for each feature set (e.g. raw activations vs SAE latents), as |coef| / max |coef| on a log
    count axis, with their Gini coefficient (how concentrated the weight is on few features)."""
    if not coefs:
        raise ValueError("no probe coefficients to plot")
    fig, axes = plt.subplots(1, len(coefs), figsize=(4.4 * len(coefs), 3.6), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (task, by_features) in zip(axes[0], sorted(coefs.items())):
        for label, coef in by_features.items():
            magnitude = np.abs(np.ravel(coef))
            scaled = magnitude / magnitude.max() if magnitude.max() > 0 else magnitude
            ax.hist(scaled, bins=bins, histtype="step", linewidth=1.5,
                    label=f"{label} ({magnitude.size:,} coefs, Gini {gini(magnitude):.2f})")
        ax.set_yscale("log")
        ax.set_xlabel("|coefficient| / max |coefficient|")
        ax.set_ylabel("coefficients")
        ax.set_title(task.replace("_", " "), fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
