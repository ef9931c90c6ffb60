"""The probe figures: test metric per layer, raw vs SAE (paper Fig 4), and coefficient
distributions with their Gini coefficients (paper Fig 9).
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from protsae.figures.style import save
from protsae.probes.interpret import gini

METRIC_LABELS = {"accuracy": "test accuracy", "spearman": "test Spearman rho"}


def plot_probe_layers(rows: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """Fig 4: per task (one panel each), the probe's test metric per layer, raw activations vs
    SAE latents. rows: task, layer, kind (``raw`` or ``sae``), metric, test_score, label (legend
    text of the kind), and optionally test_score_low / test_score_high, the bootstrap interval,
    drawn as error bars where known."""
    if rows.empty:
        raise ValueError("no probe results to plot")
    tasks = sorted(rows["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        task_rows = rows[rows["task"] == task]
        for (kind, label), group in task_rows.groupby(["kind", "label"]):
            group = group.sort_values("layer")
            ax.errorbar(group["layer"], group["test_score"], yerr=_error_bars(group),
                        marker="o" if kind == "raw" else "s", label=label, capsize=3)
        ax.set_xticks(sorted(task_rows["layer"].unique()))
        ax.set_xlabel("layer")
        ax.set_ylabel(METRIC_LABELS.get(task_rows["metric"].iloc[0], task_rows["metric"].iloc[0]))
        ax.set_title(task.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    save(fig, path)


def _error_bars(group: pd.DataFrame) -> np.ndarray | None:
    """(2, n) distances from each score down to its interval's low end and up to its high end
    (0 where the interval is unknown); None when the rows carry no interval at all."""
    if "test_score_low" not in group.columns or "test_score_high" not in group.columns:
        return None
    score = group["test_score"].to_numpy(dtype=float)
    low = group["test_score_low"].to_numpy(dtype=float)
    high = group["test_score_high"].to_numpy(dtype=float)
    if np.isnan(low).all() and np.isnan(high).all():
        return None
    return np.nan_to_num(np.vstack([score - low, high - score]).clip(min=0))


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
    save(fig, path)

