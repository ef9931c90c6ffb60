"""One probe fit, as the workflow runs it: a task's labels restricted to the sequences its
dataset sampled, the features of one layer (raw activations or one SAE's latents), the probe the
task names, its largest coefficients (with example proteins for SAE latents) and its summary."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from protsae.bootstrap import BootstrapSettings
from protsae.files import atomic_path
from protsae.probes.features import (
    pooled_activations,
    pooled_codes,
    residue_activations,
    residue_codes,
)
from protsae.probes.interpret import (
    coefficient_stats,
    latent_examples,
    top_coefficients,
)
from protsae.probes.intervals import probe_intervals
from protsae.probes.linear import (
    ProbeResult,
    fit_protein_classifier,
    fit_protein_regressor,
)
from protsae.probes.residue import fit_residue_classifier
from protsae.probes.tasks import read_task_labels

log = logging.getLogger(__name__)

PROBES = ("residue_classifier", "protein_classifier", "protein_regressor")


@dataclass
class ProbeFit:
    """A fitted probe with what the workflow writes of it."""

    result: ProbeResult
    top: pd.DataFrame
    """The largest coefficients per class (`top_coefficients`), with example proteins for latents."""
    summary: dict
    """result.json: task, layer, features, the probe's metrics with their bootstrap intervals
    (``<metric>_low``, ``<metric>_high`` after each, and ``bootstrap``: how they were drawn) and
    its coefficient statistics."""


def sampled_labels(labels_path: str | os.PathLike, lengths_path: str | os.PathLike) -> pd.DataFrame:
    """The task's labels of the sequences its dataset sampled (``lengths.tsv`` of the dataset)."""
    labels = read_task_labels(labels_path)
    sampled = set(pd.read_csv(lengths_path, sep="\t", dtype={"seq_id": str})["seq_id"])
    kept = labels["id"].isin(sampled)
    log.info("%d sequences (%d not in the dataset sample)", int(kept.sum()), int((~kept).sum()))
    return labels[kept].reset_index(drop=True)


def fit_probe(task: Mapping, settings: Mapping, labels: pd.DataFrame, paths: Sequence[str | os.PathLike],
              raw: bool) -> ProbeResult:
    """Fit the probe ``task["probe"]`` on the features in ``paths``: activation shards
    (``raw``) or an SAE's code shards; ``settings`` is the config's ``probes`` section."""
    probe = task["probe"]
    if probe == "residue_classifier":
        data = residue_activations(paths, labels) if raw else residue_codes(paths, labels)
        return fit_residue_classifier(data, weight_decays=settings["weight_decays"], epochs=settings["epochs"],
                                      seed=task["seed"])
    if probe not in PROBES:
        raise ValueError(f"probe {probe!r} is not one of {PROBES}")
    ids = labels["id"].tolist()
    X = pooled_activations(paths, ids) if raw else pooled_codes(paths, ids)
    split = labels["split"].to_numpy()
    if probe == "protein_classifier":
        return fit_protein_classifier(X, labels["label"].astype(str).to_numpy(), split, Cs=settings["Cs"])
    return fit_protein_regressor(X, labels["label"].astype(float).to_numpy(), split, alphas=settings["alphas"])


def run_probe(task_name: str, task: Mapping, settings: Mapping, layer: int, features: str,
              labels: pd.DataFrame, paths: Sequence[str | os.PathLike],
              sequences: Mapping[str, str], bootstrap: BootstrapSettings = BootstrapSettings()) -> ProbeFit:
    """The probe of one (task, layer, features) fit, with its top coefficients and summary.
    ``features`` is ``"raw"`` or the name of the SAE whose code shards ``paths`` are;
    ``bootstrap`` says how the intervals of its test metrics are drawn."""
    raw = features == "raw"
    result = fit_probe(task, settings, labels, paths, raw)
    top = top_coefficients(result, n=settings["n_top"])
    if not raw:
        top = latent_examples(top, paths, labels, sequences, n_examples=settings["n_examples"])
    summary = {"task": task_name, "layer": layer, "features": features, "probe": result.task,
               **with_intervals(result.to_dict(), probe_intervals(result, labels, bootstrap)),
               "coefficient_stats": coefficient_stats(result.coef)}
    return ProbeFit(result, top, summary)


def with_intervals(scores: dict, intervals: dict) -> dict:
    """``result.to_dict()`` (less its task) with each metric's ``_low``/``_high`` right after it:
    test_score at the top level, the extras (Pearson r, RMSE) inside ``extras``; then
    ``bootstrap``."""
    out: dict = {}
    for key, value in scores.items():
        if key == "task":
            continue
        if key == "extras":
            value = {name: extra for name, extra in _interleaved(value, intervals)}
        out[key] = value
        if key == "test_score":
            out["test_score_low"], out["test_score_high"] = intervals["test_score_low"], intervals["test_score_high"]
    out["bootstrap"] = intervals["bootstrap"]
    return out


def _interleaved(extras: dict, intervals: dict):
    for name, value in extras.items():
        yield name, value
        if f"{name}_low" in intervals:
            yield f"{name}_low", intervals[f"{name}_low"]
            yield f"{name}_high", intervals[f"{name}_high"]


def save_coefficients(coef: np.ndarray, path: str | os.PathLike) -> None:
    """The probe's coefficients (standardised units) as ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, coef)
