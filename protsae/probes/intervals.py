"""Bootstrap intervals of a probe's test metrics (issue 16, item 4): the demo's localisation test
set has about 200 proteins, where one protein moves accuracy by half a point.

The resampling unit is the test protein, or the test *cluster* where the task's split keeps
clusters apart (`resampling_units`); residue-level probes resample proteins or clusters too, never
single residues, since a protein's residues are not independent. Accuracy (protein or residue
level) is a ratio of per-protein sums under the resampling weights, so it is vectorised over
resamples; Spearman rho is computed on each materialised resample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from protsae.bootstrap import (
    BootstrapSettings,
    percentile_interval,
    unit_codes,
    unit_weights,
    weighted_pearson,
    weighted_ratio,
    weighted_rmse,
    weighted_spearman,
)
from protsae.probes.linear import ProbeResult


def resampling_units(labels: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Each labels row's resampling unit ((n_rows,) str) and the unit's name.

    ``cluster`` when the labels have a ``cluster`` column and no cluster with a test member also
    has a train or valid member, i.e. the test split was drawn by whole clusters (the tasks
    without a published split); ``protein`` otherwise (published splits, whose clusters may cross
    them), with each protein its own unit.
    """
    ids = labels["id"].astype(str).to_numpy()
    if "cluster" not in labels.columns:
        return ids, "protein"
    # A row without a cluster is its own unit, not one "nan" cluster with every other such row.
    raw = labels["cluster"]
    missing = raw.isna().to_numpy() | (raw.astype(str).str.strip().to_numpy() == "")
    cluster = np.where(missing, "no cluster: " + labels["id"].astype(str).to_numpy(), raw.astype(str).to_numpy())
    is_test = labels["split"].astype(str).to_numpy() == "test"
    if np.intersect1d(cluster[is_test], cluster[~is_test]).size:
        return ids, "protein"
    return cluster, "cluster"


def probe_intervals(result: ProbeResult, labels: pd.DataFrame, settings: BootstrapSettings) -> dict:
    """Intervals of ``result``'s test metric and of its numeric extras (regression: Pearson r,
    RMSE), as result.json keys: ``test_score_low``/``test_score_high``, ``<extra>_low``/
    ``<extra>_high``, and ``bootstrap`` (unit, n_units, n_resamples, seed, confidence).

    labels: the task's labels in the order the probe's features were given (the rows
    ``result.test_items.protein`` index).
    """
    items = result.test_items
    if items is None:
        raise ValueError(f"{result.task} probe result carries no test predictions to resample")
    units, unit = resampling_units(labels)
    # One weight per test protein: a residue probe's items are folded into their protein.
    proteins, item_protein = np.unique(items.protein, return_inverse=True)
    weights = unit_weights(units[proteins], settings.n_resamples, settings.seed)
    intervals: dict[str, tuple[float, float]] = {}
    if result.metric == "accuracy":
        correct = np.bincount(item_protein, weights=items.prediction == items.target, minlength=len(proteins))
        count = np.bincount(item_protein, minlength=len(proteins))
        intervals["test_score"] = percentile_interval(weighted_ratio(correct, count, weights), settings.confidence)
    elif result.metric == "spearman":
        if len(proteins) != len(items.protein):
            raise ValueError("a regression probe has one test item per protein")
        # Items follow their proteins' sorted order here, like the weight columns.
        order = np.argsort(items.protein, kind="stable")
        prediction = np.asarray(items.prediction, dtype=np.float64)[order]
        target = np.asarray(items.target, dtype=np.float64)[order]
        resampled = {
            "test_score": weighted_spearman(prediction, target, weights),
            "pearson": weighted_pearson(prediction, target, weights),
            "rmse": weighted_rmse(prediction, target, weights),
        }
        intervals = {name: percentile_interval(values, settings.confidence) for name, values in resampled.items()}
    else:
        raise ValueError(f"no bootstrap for probe metric {result.metric!r}")
    out: dict = {}
    for name, (low, high) in intervals.items():
        out[f"{name}_low"], out[f"{name}_high"] = _json_float(low), _json_float(high)
    out["bootstrap"] = {"unit": unit, "n_units": unit_codes(units[proteins])[1], "n_resamples": settings.n_resamples,
                        "seed": settings.seed, "confidence": settings.confidence}
    return out


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
