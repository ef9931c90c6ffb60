"""Reading a fitted probe: its largest coefficients per class (the latents to inspect, paper
Figs 5 and 8), the distribution of its coefficients (paper Fig 9) and, for SAE latents, the
top-activating proteins of each.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from protsae.codes.maxima import max_activation_per_protein
from protsae.latents.patterns import collect_tracks, top_sequences
from protsae.probes.features import PathOrPaths
from protsae.probes.linear import ProbeResult


def top_coefficients(result: ProbeResult, n: int = 10, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``n`` largest positive and ``n`` most negative coefficients of each coefficient row.

    Rows are named by ``result.coef_classes``: every class of a multinomial probe; for binary
    logistic regression sklearn's single row, which scores the positive class ``classes[1]``
    (its negative coefficients favour ``classes[0]``); ``target`` for regression. Columns: class,
    sign (``positive``/``negative``), rank (1 = largest magnitude), feature (column index), name
    (``feature_names[feature]``, or the index as text), coefficient (standardised units).
    Features with a zero coefficient are listed under neither sign.
    """
    records = []
    for class_name, row in zip(result.coef_classes, result.coef):
        features = np.arange(len(row))
        for sign, direction in (("positive", 1.0), ("negative", -1.0)):
            picked = features[direction * row > 0]
            # lexsort: by magnitude descending, ties by feature index.
            picked = picked[np.lexsort((picked, -direction * row[picked]))][:n]
            for rank, feature in enumerate(picked, start=1):
                records.append({
                    "class": class_name,
                    "sign": sign,
                    "rank": rank,
                    "feature": int(feature),
                    "name": str(feature_names[feature]) if feature_names is not None else str(feature),
                    "coefficient": float(row[feature]),
                })
    return pd.DataFrame.from_records(records, columns=["class", "sign", "rank", "feature", "name", "coefficient"])


def coefficient_stats(coef: np.ndarray) -> dict[str, float]:
    """Distribution of all entries of ``coef`` (paper Fig 9 compares raw vs SAE probes): n, mean,
    variance and std (ddof 0), skew and excess kurtosis (scipy, biased estimators), max |coef|, the
    share of entries with |coef| above 10% of that maximum, and the Gini coefficient of |coef| (0:
    weight spread evenly; near 1: concentrated on a few features)."""
    values = np.asarray(coef, dtype=np.float64).ravel()
    magnitude = np.abs(values)
    max_abs = float(magnitude.max()) if values.size else math.nan
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "variance": float(values.var()),
        "std": float(values.std()),
        "skew": float(scipy.stats.skew(values)),
        "excess_kurtosis": float(scipy.stats.kurtosis(values, fisher=True)),
        "max_abs": max_abs,
        "share_above_10pct_max": float(np.mean(magnitude > 0.1 * max_abs)) if max_abs > 0 else math.nan,
        "gini_abs": gini(magnitude),
    }


def latent_examples(top: pd.DataFrame, code_paths: PathOrPaths, labels: pd.DataFrame, sequences: Mapping[str, str],
                    n_examples: int = 5) -> pd.DataFrame:
    """The top-activating proteins of each latent in ``top`` (from `top_coefficients` of an SAE
    probe), with their residue-level activations, so a latent a probe leans on can be inspected.

    labels: the task's labels table (id, label, length); sequences: id -> residues. For every row
    of ``top`` and each of the latent's ``n_examples`` proteins with the highest maximum activation
    (ties by id): example (1 = highest), protein, max_activation, protein_label (the protein's
    label; for residue-level tasks the label string), active_residues (``pos:value`` of every
    residue where the latent fires, 0-based positions, ';'-joined) and sequence.
    """
    ids = labels["id"].tolist()
    maxima = max_activation_per_protein(code_paths)
    best = top_sequences(maxima, ids, n_top=n_examples, fraction=0.0)
    latents = sorted(set(top["feature"].astype(int)))
    wanted = [(protein, latent) for latent in latents for protein in best[latent]]
    tracks = collect_tracks(code_paths, wanted, labels.set_index("id")["length"].to_dict())
    label_of = labels.set_index("id")["label"].to_dict()
    examples = {}
    for index, (protein, latent) in enumerate(wanted):
        track = tracks[index]
        examples.setdefault(latent, []).append({
            "example": len(examples.get(latent, [])) + 1,
            "protein": protein,
            "max_activation": float(track.values.max()),
            "protein_label": label_of[protein],
            "active_residues": ";".join(f"{p}:{v:.3g}" for p, v in zip(track.positions, track.values)),
            "sequence": sequences[protein],
        })
    rows = [row | example for row in top.to_dict("records") for example in examples.get(int(row["feature"]), [])]
    return pd.DataFrame(rows, columns=[*top.columns, "example", "protein", "max_activation", "protein_label",
                                       "active_residues", "sequence"])


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n - 1) / n when one holds
    everything; NaN when all are 0."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    total = values.sum()
    if values.size == 0 or total == 0:
        return math.nan
    n = values.size
    return float(2 * np.sum(np.arange(1, n + 1) * values) / (n * total) - (n + 1) / n)
