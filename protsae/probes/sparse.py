"""Sparse probing (SAEBench; Gao et al. 2024): how much of a protein-level label a handful of
features carry, SAE latents against raw residual dimensions.

For each binary task (one class against the rest, for a multi-class label such as localisation;
one family against every other protein, for membership of the evaluation set's largest
families), on mean-pooled features:

1. rank the features by the absolute difference between their mean over positive and over
   negative training proteins (SAEBench's ``get_top_k_mean_diff_mask``; ties: the lower feature
   index), and keep the top k;
2. fit a logistic regression (sklearn, lbfgs, inverse regularisation C, classes weighted
   inversely to their frequency, so a rare family is not won by answering "no") on those k
   features, standardised with the training proteins' mean and std;
3. score it on the test proteins: accuracy, and ROC AUC of its decision function.

No hyper-parameter is chosen, so validation proteins (where a task has them) join the training
ones. The task's score at each k is the mean over its binary tasks, with a bootstrap interval
over test proteins or clusters (`protsae.bootstrap`): every resample reweights the same test
proteins for all binary tasks, and the mean of the resampled scores is taken per resample.
SAEBench balances its datasets by subsampling; here every protein is kept and the training
classes are weighted instead. Test accuracy counts every test protein, so for a rare family it
is dominated by the negatives; the AUC is not, which is why both are reported.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from protsae.bootstrap import (
    BootstrapSettings,
    percentile_interval,
    unit_weights,
    weighted_auc,
    weighted_ratio,
)
from protsae.latents.families import filter_types, read_labels
from protsae.probes.intervals import resampling_units

log = logging.getLogger(__name__)

CLASS_COLUMNS = ("k", "target", "n_train_positive", "n_test_positive", "features", "accuracy", "auc")
SUMMARY_COLUMNS = ("k", "n_targets", "accuracy", "accuracy_low", "accuracy_high", "auc", "auc_low", "auc_high",
                   "n_auc_targets")


def mean_difference_order(X: np.ndarray, positive: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(d,) feature indices by |mean over positive rows - mean over negative rows| (among
    ``rows``, a boolean mask), largest first; ties by feature index."""
    X = np.asarray(X)
    pos, neg = rows & positive, rows & ~positive
    if not pos.any() or not neg.any():
        raise ValueError("mean difference needs positive and negative training rows")
    difference = np.abs(X[pos].mean(0, dtype=np.float64) - X[neg].mean(0, dtype=np.float64))
    return np.lexsort((np.arange(difference.size), -difference))


@dataclass
class BinaryFit:
    """One binary task at one k: the chosen features, and the test predictions' correctness and
    decision scores ((n_test,) each, in test-row order)."""

    features: np.ndarray
    correct: np.ndarray
    score: np.ndarray


def fit_binary(X: np.ndarray, positive: np.ndarray, fit_rows: np.ndarray, test_rows: np.ndarray, k: int,
               C: float = 1.0, max_iter: int = 1000, order: np.ndarray | None = None) -> BinaryFit:
    """Top-k features by mean difference on ``fit_rows``, logistic regression on them, scored
    on ``test_rows`` (boolean masks). ``order``: a precomputed `mean_difference_order`."""
    if order is None:
        order = mean_difference_order(X, positive, fit_rows)
    features = order[:k]
    selected = np.asarray(X[:, features], dtype=np.float64)
    mean = selected[fit_rows].mean(0)
    std = selected[fit_rows].std(0)
    std[std == 0] = 1.0
    standardised = (selected - mean) / std
    model = LogisticRegression(C=C, solver="lbfgs", class_weight="balanced", max_iter=max_iter)
    model.fit(standardised[fit_rows], positive[fit_rows])
    prediction = model.predict(standardised[test_rows])
    return BinaryFit(features, prediction == positive[test_rows], model.decision_function(standardised[test_rows]))


def one_vs_rest(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """A multi-class label as binary targets: class -> (n,) bool, classes sorted."""
    labels = np.asarray(labels).astype(str)
    return {name: labels == name for name in sorted(set(labels))}


def family_targets(labels: pd.DataFrame, proteins: Sequence[str], train: np.ndarray, n_families: int,
                   min_positives: int = 2) -> dict[str, np.ndarray]:
    """Membership of the ``n_families`` families most frequent among the training proteins
    (ties: the accession that sorts first), each with at least ``min_positives`` training
    members: accession -> (len(proteins),) bool.

    labels: one row per (protein, family) with columns protein and accession (families.tsv,
    already restricted to the family types in use). train: (len(proteins),) bool.
    """
    index = pd.Index(list(proteins))
    rows = labels[labels["protein"].isin(index)]
    position = index.get_indexer(rows["protein"])
    train_members = rows[train[position]].drop_duplicates(["protein", "accession"])
    counts = train_members.groupby("accession").size()
    counts = counts[counts >= min_positives]
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n_families]
    targets = {}
    for accession, _ in ranked:
        member = np.zeros(len(index), dtype=bool)
        member[index.get_indexer(rows.loc[rows["accession"] == accession, "protein"])] = True
        targets[accession] = member
    return targets


def sparse_probe(X: np.ndarray, targets: Mapping[str, np.ndarray], split: np.ndarray, units: np.ndarray,
                 ks: Sequence[int] = (1, 2, 5), C: float = 1.0,
                 bootstrap: BootstrapSettings = BootstrapSettings()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sparse probes of every binary target at every k.

    X: (n, d) mean-pooled features; targets: name -> (n,) bool; split: (n,) train / valid / test
    (valid joins train; other values are ignored); units: (n,) each protein's resampling unit
    (its id, or its cluster). Targets without a positive or a negative among the training
    proteins are left out (logged); with none left, both tables are empty.

    Returns (per_target, summary): per_target one row per (k, target) with `CLASS_COLUMNS`
    (features: the chosen feature indices, ';'-joined; auc NaN where the test proteins hold only
    one class); summary one row per k with `SUMMARY_COLUMNS`: the mean accuracy and AUC over the
    targets with their percentile intervals (AUC over the targets whose test proteins hold both
    classes).
    """
    split = np.asarray(split).astype(str)
    fit_rows = np.isin(split, ("train", "valid"))
    test_rows = split == "test"
    if not fit_rows.any() or not test_rows.any():
        raise ValueError("sparse probing needs training and test proteins")
    if max(ks) > X.shape[1]:
        raise ValueError(f"k = {max(ks)} exceeds the {X.shape[1]} features")
    usable = {}
    for name, positive in targets.items():
        n_pos = int((positive & fit_rows).sum())
        if n_pos == 0 or n_pos == int(fit_rows.sum()):
            log.warning("target %s left out: %d of %d training proteins positive", name, n_pos, int(fit_rows.sum()))
            continue
        usable[name] = np.asarray(positive, dtype=bool)
    if not usable:
        log.warning("no target has both positive and negative training proteins: nothing to probe")
        return pd.DataFrame(columns=list(CLASS_COLUMNS)), pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    weights = unit_weights(np.asarray(units)[test_rows], bootstrap.n_resamples, bootstrap.seed)
    ones = np.ones(int(test_rows.sum()))
    orders = {name: mean_difference_order(X, positive, fit_rows) for name, positive in usable.items()}
    rows, summary = [], []
    for k in ks:
        accuracies, aucs = [], []
        for name, positive in usable.items():
            fit = fit_binary(X, positive, fit_rows, test_rows, k, C, order=orders[name])
            test_positive = positive[test_rows]
            both = test_positive.any() and not test_positive.all()
            accuracy = float(fit.correct.mean())
            auc = float(weighted_auc(fit.score, test_positive, ones[None, :])[0]) if both else np.nan
            rows.append({"k": k, "target": name, "n_train_positive": int((positive & fit_rows).sum()),
                         "n_test_positive": int(test_positive.sum()),
                         "features": ";".join(str(int(f)) for f in fit.features), "accuracy": accuracy, "auc": auc})
            accuracies.append(weighted_ratio(fit.correct, ones, weights))
            if both:
                aucs.append(weighted_auc(fit.score, test_positive, weights))
        k_rows = [row for row in rows if row["k"] == k]
        accuracy_low, accuracy_high = percentile_interval(np.mean(accuracies, axis=0), bootstrap.confidence)
        if aucs:
            with warnings.catch_warnings():
                # A resample may hold no test positive of any target: its mean is NaN, and dropped.
                warnings.simplefilter("ignore", RuntimeWarning)
                resampled_auc = np.nanmean(aucs, axis=0)
            auc_low, auc_high = percentile_interval(resampled_auc, bootstrap.confidence)
            auc = float(np.nanmean([row["auc"] for row in k_rows]))
        else:
            auc, auc_low, auc_high = np.nan, np.nan, np.nan
        summary.append({"k": k, "n_targets": len(k_rows), "accuracy": float(np.mean([row["accuracy"] for row in k_rows])),
                        "accuracy_low": accuracy_low, "accuracy_high": accuracy_high, "auc": auc, "auc_low": auc_low,
                        "auc_high": auc_high, "n_auc_targets": len(aucs)})
    return pd.DataFrame(rows, columns=list(CLASS_COLUMNS)), pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS))


@dataclass
class SparseProblem:
    """What one sparse-probing job probes: its proteins (the feature rows, in order), binary
    targets, split and resampling units (with the unit's name)."""

    proteins: list[str]
    targets: dict[str, np.ndarray]
    split: np.ndarray
    units: np.ndarray
    unit: str


def task_problem(labels: pd.DataFrame) -> SparseProblem:
    """A protein-classifier probe task (its sampled labels, `protsae.probes.fit.sampled_labels`)
    as one-vs-rest targets, resampled by cluster where its split is by cluster."""
    units, unit = resampling_units(labels)
    return SparseProblem(labels["id"].astype(str).tolist(), one_vs_rest(labels["label"].astype(str)),
                         labels["split"].astype(str).to_numpy(), units, unit)


def family_problem(labels_path, split: pd.Series, types: Sequence[str] | None, n_families: int,
                   min_positives: int) -> SparseProblem:
    """The evaluation set as a family-membership problem: its proteins (split order), the
    targets of its largest families (`family_targets`) and its train/test split, resampled by
    protein (each is its sequence cluster's representative already)."""
    labels = filter_types(read_labels(labels_path), types)
    proteins = [str(protein) for protein in split.index]
    split_values = split.astype(str).to_numpy()
    targets = family_targets(labels, proteins, split_values == "train", n_families, min_positives)
    return SparseProblem(proteins, targets, split_values, np.asarray(proteins), "protein")


def run_sparse_probe(problem: SparseProblem, X: np.ndarray, ks: Sequence[int], C: float,
                     bootstrap: BootstrapSettings) -> tuple[pd.DataFrame, dict]:
    """`sparse_probe` of a problem on its features X (len(problem.proteins), d): the per-target
    table and the job's result.json body (n_features, n_targets, the targets, per k the mean
    accuracy and AUC with their intervals, and how the intervals were drawn)."""
    per_target, summary = sparse_probe(X, problem.targets, problem.split, problem.units, ks, C, bootstrap)
    test = problem.split == "test"
    result = {
        "n_features": int(X.shape[1]),
        "n_proteins": len(problem.proteins),
        "n_test": int(test.sum()),
        "targets": sorted(set(per_target["target"])),
        "by_k": [{key: _json_value(value) for key, value in row.items()} for row in summary.to_dict("records")],
        "bootstrap": {"unit": problem.unit, "n_units": int(np.unique(problem.units[test]).size),
                      "n_resamples": bootstrap.n_resamples, "seed": bootstrap.seed,
                      "confidence": bootstrap.confidence},
    }
    return per_target, result


def _json_value(value):
    if isinstance(value, (np.integer, int)):
        return int(value)
    value = float(value)
    return value if np.isfinite(value) else None
