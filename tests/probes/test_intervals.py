"""Bootstrap intervals: weights that resample whole units, weighted metrics equal to the metric of
the materialised resample, known intervals (a perfect predictor gives [1, 1]), widths that shrink
with more test items, and the intervals a probe result carries."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score

from protsae.bootstrap import (
    BootstrapSettings,
    percentile_interval,
    unit_weights,
    weight_blocks,
    weighted_auc,
    weighted_pearson,
    weighted_ratio,
    weighted_rmse,
    weighted_spearman,
)
from protsae.probes.features import ResidueData
from protsae.probes.fit import with_intervals
from protsae.probes.intervals import probe_intervals, resampling_units
from protsae.probes.linear import fit_protein_classifier, fit_protein_regressor
from protsae.probes.residue import fit_residue_classifier

torch.set_num_threads(1)


def test_weights_draw_as_many_units_as_there_are_and_are_seeded():
    units = np.array(["a", "b", "c", "d", "e"])
    weights = unit_weights(units, 200, seed=3)
    assert weights.shape == (200, 5) and (weights.sum(1) == 5).all()
    np.testing.assert_array_equal(weights, unit_weights(units, 200, seed=3))
    assert not np.array_equal(weights, unit_weights(units, 200, seed=4))
    np.testing.assert_array_equal(np.vstack(list(weight_blocks(units, 200, 3, block=7))), weights)


def test_cluster_resampling_draws_whole_clusters():
    clusters = np.array(["c1", "c1", "c1", "c2", "c3", "c3", "c4", "c4", "c4", "c4"])
    weights = unit_weights(clusters, 500, seed=0)
    for cluster in np.unique(clusters):
        members = weights[:, clusters == cluster]
        assert (members == members[:, :1]).all()  # a cluster is drawn whole, never in part
    # Four clusters are drawn per resample, so the item weights sum to the drawn clusters' sizes.
    sizes = pd.Series(clusters).value_counts()
    per_cluster = np.stack([weights[:, np.flatnonzero(clusters == c)[0]] for c in sizes.index], axis=1)
    assert (per_cluster.sum(1) == 4).all()
    np.testing.assert_array_equal(weights.sum(1), per_cluster @ sizes.to_numpy())


def test_unit_order_does_not_depend_on_item_order():
    units = np.array(["x", "y", "x", "z"])
    order = np.array([3, 1, 0, 2])
    np.testing.assert_array_equal(unit_weights(units, 50, 1)[:, order], unit_weights(units[order], 50, 1))


def test_perfect_predictor_interval_is_one_one():
    weights = unit_weights(np.arange(30), 1000, 0)
    correct = np.ones(30)
    assert percentile_interval(weighted_ratio(correct, np.ones(30), weights)) == (1.0, 1.0)
    x = np.arange(30.0)
    assert percentile_interval(weighted_spearman(x, 2 * x + 1, weights)) == pytest.approx((1.0, 1.0))
    assert percentile_interval(weighted_auc(x, x >= 15, weights)) == (1.0, 1.0)


def test_interval_width_shrinks_with_more_test_items():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        correct = rng.random(n) < 0.7
        low, high = percentile_interval(weighted_ratio(correct, np.ones(n), unit_weights(np.arange(n), 1000, 0)))
        assert low < correct.mean() < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # The binomial standard error: the 95% width is about 4 sqrt(p (1 - p) / n).
    assert widths[2] == pytest.approx(3.92 * np.sqrt(0.21 / 5000), rel=0.15)


def test_weighted_metrics_equal_the_materialised_resample():
    rng = np.random.default_rng(1)
    n = 40
    x, y = rng.random(n), rng.random(n)
    score = rng.integers(0, 6, n).astype(float)  # ties
    positive = rng.random(n) < 0.4
    weights = unit_weights(np.arange(n), 25, 2)
    for row, w in enumerate(weights):
        index = np.repeat(np.arange(n), w)
        assert weighted_spearman(x, y, w[None])[0] == pytest.approx(scipy.stats.spearmanr(x[index], y[index]).statistic)
        assert weighted_pearson(x, y, w[None])[0] == pytest.approx(np.corrcoef(x[index], y[index])[0, 1])
        assert weighted_rmse(x, y, w[None])[0] == pytest.approx(np.sqrt(np.mean((x[index] - y[index]) ** 2)))
        assert weighted_auc(score, positive, w[None])[0] == pytest.approx(roc_auc_score(positive[index], score[index]))
    assert np.isnan(weighted_auc(score, np.zeros(n, bool), weights)).all()
    assert np.isnan(weighted_spearman(np.ones(n), y, weights[:2])).all()


def test_resampling_units_follow_the_split():
    by_cluster = pd.DataFrame({"id": list("abcdef"), "split": ["train", "train", "test", "test", "valid", "test"],
                               "cluster": ["a", "a", "c", "c", "e", "f"]})
    units, unit = resampling_units(by_cluster)
    assert unit == "cluster" and list(units) == ["a", "a", "c", "c", "e", "f"]
    crossing = by_cluster.assign(cluster=["a", "a", "a", "c", "e", "f"])  # cluster a has test member c
    units, unit = resampling_units(crossing)
    assert unit == "protein" and list(units) == list("abcdef")


def test_classifier_probe_intervals_on_a_perfect_and_a_noisy_task():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n).astype(str)
    X = np.c_[(y == "1") * 4.0 + rng.normal(0, 0.1, n), rng.normal(size=(n, 3))]
    split = rng.choice(["train", "valid", "test"], n, p=[0.6, 0.2, 0.2])
    labels = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "split": split,
                           "cluster": [f"c{i // 3}" for i in range(n)]})
    labels["cluster"] = np.where(split == "test", "t" + labels["cluster"], labels["cluster"])
    result = fit_protein_classifier(X, y, split, Cs=[1.0])
    assert result.test_score == 1.0
    intervals = probe_intervals(result, labels, BootstrapSettings(500, 0, 0.95))
    assert (intervals["test_score_low"], intervals["test_score_high"]) == (1.0, 1.0)
    assert intervals["bootstrap"]["unit"] == "cluster"
    assert intervals["bootstrap"]["n_units"] == labels.loc[split == "test", "cluster"].nunique()
    noisy = fit_protein_classifier(rng.normal(size=(n, 4)), y, split, Cs=[1.0])
    intervals = probe_intervals(noisy, labels, BootstrapSettings(500, 0, 0.95))
    assert intervals["test_score_low"] < noisy.test_score < intervals["test_score_high"]
    summary = with_intervals(noisy.to_dict(), intervals)
    keys = list(summary)
    assert keys[keys.index("test_score") + 1:keys.index("test_score") + 3] == ["test_score_low", "test_score_high"]


def test_regression_probe_intervals_cover_every_metric():
    rng = np.random.default_rng(2)
    n = 200
    X = rng.normal(size=(n, 3))
    y = X[:, 0] + rng.normal(0, 1.0, n)
    split = rng.choice(["train", "valid", "test"], n, p=[0.6, 0.2, 0.2])
    labels = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "split": split, "cluster": ["one"] * n})
    result = fit_protein_regressor(X, y, split, alphas=[1.0])
    intervals = probe_intervals(result, labels, BootstrapSettings(300, 0, 0.9))
    assert intervals["bootstrap"]["unit"] == "protein"  # one cluster spans every split
    for name, value in (("test_score", result.test_score), ("pearson", result.extras["pearson"]),
                        ("rmse", result.extras["rmse"])):
        assert intervals[f"{name}_low"] < value < intervals[f"{name}_high"]
    summary = with_intervals(result.to_dict(), intervals)
    assert list(summary["extras"]) == ["pearson", "pearson_low", "pearson_high", "rmse", "rmse_low", "rmse_high"]


def test_residue_probe_resamples_proteins_not_residues():
    # Protein 0..9 test; even test proteins are all-helix and predictable, odd ones unpredictable
    # noise: a residue bootstrap would be far narrower than the protein bootstrap.
    rng = np.random.default_rng(3)
    n_proteins, length = 40, 50
    protein = np.repeat(np.arange(n_proteins), length)
    split_of = np.where(np.arange(n_proteins) < 10, "test", np.where(np.arange(n_proteins) < 32, "train", "valid"))
    y = np.where(protein % 2 == 0, 0, rng.integers(0, 2, protein.size)).astype(np.int64)
    features = np.c_[np.where(protein % 2 == 0, 3.0, 0.0) + rng.normal(0, 0.1, protein.size),
                     rng.normal(size=protein.size)].astype(np.float32)
    data = ResidueData(y=y, split=split_of[protein], protein=protein, pos=np.tile(np.arange(length), n_proteins),
                       classes=["C", "H"], protein_ids=[f"p{i}" for i in range(n_proteins)], n_features=2,
                       features=features)
    result = fit_residue_classifier(data, weight_decays=[0.0], epochs=3, batch_size=256, seed=0)
    labels = pd.DataFrame({"id": data.protein_ids, "split": split_of, "cluster": data.protein_ids})
    intervals = probe_intervals(result, labels, BootstrapSettings(1000, 0, 0.95))
    assert intervals["bootstrap"]["n_units"] == 10
    correct = (result.test_items.prediction == result.test_items.target).astype(float)
    residue_weights = unit_weights(np.arange(correct.size), 1000, 0)
    residue_low, residue_high = percentile_interval(weighted_ratio(correct, np.ones(correct.size), residue_weights))
    assert intervals["test_score_high"] - intervals["test_score_low"] > 2 * (residue_high - residue_low)


def test_discrete_interval_ends_are_resampled_counts():
    counts = np.r_[np.full(30, 4), np.arange(5, 75), np.full(900, 9)].astype(float)
    low, high = percentile_interval(counts, 0.95, discrete=True)
    assert low in counts and high in counts and low <= np.quantile(counts, 0.025) and high >= np.quantile(counts, 0.975)
    assert np.isnan(percentile_interval(np.full(10, np.nan))).all()


def test_rows_without_a_cluster_are_units_of_their_own():
    labels = pd.DataFrame({"id": list("abcd"), "split": ["train", "test", "test", "test"],
                           "cluster": ["a", None, "", "d"]})
    units, unit = resampling_units(labels)
    assert unit == "cluster" and len(set(units[1:3])) == 2 and units[3] == "d"
