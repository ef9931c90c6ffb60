"""Sparse probing: a planted latent equal to the label is ranked first by mean difference and
solves the task at k = 1 while noise latents do not; one-vs-rest over classes; the largest
families as targets; the bootstrap interval of the mean over targets."""

import numpy as np
import pandas as pd
import pytest

from protsae.bootstrap import BootstrapSettings
from protsae.probes.sparse import (
    CLASS_COLUMNS,
    SUMMARY_COLUMNS,
    family_targets,
    fit_binary,
    mean_difference_order,
    one_vs_rest,
    sparse_probe,
)


def planted(n=400, n_noise=30, seed=0):
    """Latent 7 equals the label (1 on positives, 0 elsewhere); the others are sparse noise."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    X = np.where(rng.random((n, n_noise)) < 0.2, rng.exponential(1.0, (n, n_noise)), 0.0)
    X[:, 7] = positive
    split = rng.choice(["train", "valid", "test"], n, p=[0.6, 0.1, 0.3])
    return X, positive, split


def test_planted_latent_is_picked_first_and_solves_the_task_at_k1():
    X, positive, split = planted()
    fit_rows, test_rows = split != "test", split == "test"
    assert mean_difference_order(X, positive, fit_rows)[0] == 7
    fit = fit_binary(X, positive, fit_rows, test_rows, k=1)
    assert list(fit.features) == [7] and fit.correct.all()
    # The same probe on noise alone (latent 7 removed) is near chance.
    noise = np.delete(X, 7, axis=1)
    fit = fit_binary(noise, positive, fit_rows, test_rows, k=1)
    assert fit.correct.mean() < 0.75


def test_mean_difference_is_absolute_and_ties_go_to_the_lower_index():
    positive = np.array([True, True, False, False])
    X = np.array([[0, 1, 5, 0], [0, 1, 5, 0], [0, 0, 0, 2], [0, 0, 0, 2]], dtype=float)
    # |differences| = 0, 1, 5, 2: feature 3 is lower on positives and still ranks second.
    assert list(mean_difference_order(X, positive, np.ones(4, bool))) == [2, 3, 1, 0]
    X[:, 1] = X[:, 3] = np.array([2, 2, 0, 0])
    assert list(mean_difference_order(X, positive, np.ones(4, bool))[:3]) == [2, 1, 3]
    with pytest.raises(ValueError, match="positive and negative"):
        mean_difference_order(X, np.ones(4, bool), np.ones(4, bool))


def test_one_vs_rest_probe_of_planted_classes_is_perfect_with_a_degenerate_interval():
    rng = np.random.default_rng(1)
    n = 600
    label = rng.choice(["cytoplasm", "membrane", "nucleus"], n)
    X = np.where(rng.random((n, 20)) < 0.1, rng.exponential(1.0, (n, 20)), 0.0)
    for column, name in zip((3, 11, 17), ("cytoplasm", "membrane", "nucleus")):
        X[:, column] = (label == name) * rng.uniform(1, 2, n)
    split = rng.choice(["train", "valid", "test"], n, p=[0.6, 0.1, 0.3])
    targets = one_vs_rest(label)
    assert list(targets) == ["cytoplasm", "membrane", "nucleus"]
    per_target, summary = sparse_probe(X, targets, split, units=np.arange(n), ks=(1, 2),
                                       bootstrap=BootstrapSettings(300, 0))
    assert list(per_target.columns) == list(CLASS_COLUMNS) and list(summary.columns) == list(SUMMARY_COLUMNS)
    at_1 = per_target[per_target["k"] == 1].set_index("target")
    assert at_1["features"].to_dict() == {"cytoplasm": "3", "membrane": "11", "nucleus": "17"}
    row = summary.set_index("k").loc[1]
    assert row["accuracy"] == 1.0 and (row["accuracy_low"], row["accuracy_high"]) == (1.0, 1.0)
    assert row["auc"] == 1.0 and row["n_targets"] == 3 and row["n_auc_targets"] == 3


def test_noise_features_score_near_chance_with_an_interval_around_it():
    X, positive, split = planted(n=600, seed=2)
    noise = np.delete(X, 7, axis=1)
    _, summary = sparse_probe(noise, {"family": positive}, split, units=np.arange(len(split)), ks=(1, 5),
                              bootstrap=BootstrapSettings(300, 0))
    for row in summary.itertuples():
        assert row.auc < 0.7 and row.accuracy_low < row.accuracy < row.accuracy_high
        assert row.auc_low < row.auc < row.auc_high


def test_targets_without_both_classes_on_train_are_left_out():
    X, positive, split = planted()
    constant = np.ones(len(split), dtype=bool)
    per_target, _ = sparse_probe(X, {"family": positive, "everyone": constant}, split, np.arange(len(split)), ks=(1,),
                                 bootstrap=BootstrapSettings(10, 0))
    assert list(per_target["target"]) == ["family"]
    per_target, summary = sparse_probe(X, {"everyone": constant}, split, np.arange(len(split)), ks=(1,))
    assert per_target.empty and summary.empty and list(summary.columns) == list(SUMMARY_COLUMNS)
    with pytest.raises(ValueError, match="exceeds"):
        sparse_probe(X, {"family": positive}, split, np.arange(len(split)), ks=(100,))


def test_family_targets_are_the_largest_families_on_train():
    proteins = [f"p{i}" for i in range(10)]
    train = np.array([True] * 7 + [False] * 3)
    labels = pd.DataFrame({
        "protein": ["p0", "p1", "p2", "p3", "p4", "p0", "p1", "p5", "p8", "p9", "p7", "p6", "outside"],
        "accession": ["A", "A", "A", "B", "B", "C", "C", "D", "D", "D", "E", "E", "A"],
    })
    # On train: A 3, B 2, C 2, E 1 (p6), D 1 (p5; p8, p9 are test). Ties by accession: B before C.
    targets = family_targets(labels, proteins, train, n_families=3, min_positives=2)
    assert list(targets) == ["A", "B", "C"]
    assert list(np.flatnonzero(targets["A"])) == [0, 1, 2]
    targets = family_targets(labels, proteins, train, n_families=10, min_positives=1)
    assert list(targets) == ["A", "B", "C", "D", "E"]
    assert list(np.flatnonzero(targets["D"])) == [5, 8, 9]  # test members are targets too
