"""The SAE sweep figure: FVU, delta CE, loss recovered and dead share against the swept quantity.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pandas as pd

from protsae.figures.style import SWEEP_AXES, save

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
    save(fig, path)

