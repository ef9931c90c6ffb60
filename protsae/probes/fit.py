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
    """result.json: task, layer, features, the probe's metrics and its coefficient statistics."""


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
              sequences: Mapping[str, str]) -> ProbeFit:
    """The probe of one (task, layer, features) fit, with its top coefficients and summary.
    ``features`` is ``"raw"`` or the name of the SAE whose code shards ``paths`` are."""
    raw = features == "raw"
    result = fit_probe(task, settings, labels, paths, raw)
    top = top_coefficients(result, n=settings["n_top"])
    if not raw:
        top = latent_examples(top, paths, labels, sequences, n_examples=settings["n_examples"])
    summary = {
        "task": task_name,
        "layer": layer,
        "features": features,
        "probe": result.task,
        **{key: value for key, value in result.to_dict().items() if key != "task"},
        "coefficient_stats": coefficient_stats(result.coef),
    }
    return ProbeFit(result, top, summary)


def save_coefficients(coef: np.ndarray, path: str | os.PathLike) -> None:
    """The probe's coefficients (standardised units) as ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, coef)
