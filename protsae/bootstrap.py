"""Bootstrap intervals over test items, for the metrics of small test sets (issue 16, item 4).

A resample draws the test set's resampling *units* with replacement, as many as there are:
proteins, or whole homology clusters where the split keeps clusters apart (a cluster's members
are not independent, so resampling them one by one would understate the spread). Every item of a
unit drawn c times counts c times. Each resample is therefore a row of integer *weights* over the
items (`unit_weights`), and a metric of the resampled set is the metric under those weights: the
weighted metrics here equal the metric of the materialised resample (items repeated) exactly.

The interval is the percentile interval: the (1 - confidence) / 2 and (1 + confidence) / 2
quantiles of the resampled metric (`percentile_interval`), NaN resamples (e.g. Spearman rho of a
resample whose predictions are all equal) left out. The draws are seeded, so an interval is
reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import scipy.stats


@dataclass(frozen=True)
class BootstrapSettings:
    """n_resamples: resamples drawn; seed: of the draws; confidence: the interval's coverage."""

    n_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    @classmethod
    def from_config(cls, section: Mapping) -> "BootstrapSettings":
        """From the config's ``bootstrap`` section (keys n_resamples, seed, confidence)."""
        settings = cls(int(section["n_resamples"]), int(section["seed"]), float(section["confidence"]))
        if settings.n_resamples < 1:
            raise ValueError(f"bootstrap.n_resamples must be >= 1, got {settings.n_resamples}")
        if not 0 < settings.confidence < 1:
            raise ValueError(f"bootstrap.confidence must be in (0, 1), got {settings.confidence}")
        return settings


def unit_codes(units: np.ndarray) -> tuple[np.ndarray, int]:
    """(n_items,) unit labels (any hashable values) -> (n_items,) int64 codes 0..n_units - 1 (in
    sorted order of the labels, so the draws do not depend on item order within a unit) and
    n_units."""
    _, codes = np.unique(np.asarray(units).astype(str), return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    return codes, int(codes.max()) + 1 if codes.size else 0


def unit_draws(n_units: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_units) int64: how often each unit is drawn when n_units are drawn with
    replacement (a multinomial count per resample)."""
    if n_units < 1:
        raise ValueError("a bootstrap needs at least one test item")
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_resamples).astype(np.int64)


def unit_weights(units: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) int64 item weights: each item gets its unit's draw count.

    units: (n_items,) the resampling unit of each item (its protein id, or its cluster). Items of
    one unit always share a weight: a cluster is drawn whole or not at all.
    """
    codes, n_units = unit_codes(units)
    return unit_draws(n_units, n_resamples, np.random.default_rng(seed))[:, codes]


def weight_blocks(units: np.ndarray, n_resamples: int, seed: int, block: int = 100) -> Iterator[np.ndarray]:
    """`unit_weights` in blocks of at most ``block`` resamples ((block, n_items) each), for item
    counts where the whole matrix would be large; the blocks, stacked, equal
    ``unit_weights(units, n_resamples, seed)``."""
    codes, n_units = unit_codes(units)
    draws = unit_draws(n_units, n_resamples, np.random.default_rng(seed))
    for start in range(0, n_resamples, block):
        yield draws[start : start + block][:, codes]


def percentile_interval(values: np.ndarray, confidence: float = 0.95,
                        discrete: bool = False) -> tuple[float, float]:
    """The percentile interval of resampled metric values (NaN left out; (NaN, NaN) when all
    are NaN). ``discrete`` (counts): the ends are resampled values themselves, the low end
    rounded down to one and the high end up, so a count's interval holds counts."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    if discrete:
        return float(np.quantile(values, tail, method="lower")), float(np.quantile(values, 1 - tail, method="higher"))
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


# -- weighted metrics: each takes weights (n_resamples, n_items) and returns (n_resamples,) -----


def weighted_ratio(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i w_i num_i / sum_i w_i den_i per resample: accuracy with num = correct and den = 1,
    or residue accuracy per protein with num = its correct residues and den = its residues.
    NaN where the denominator is 0."""
    top = weights @ np.asarray(numerator, dtype=np.float64)
    bottom = weights @ np.asarray(denominator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson r of (x, y) with items counted by their weights (NaN where a side is constant)."""
    w = np.asarray(weights, dtype=np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    total = w.sum(1, keepdims=True)
    # Centred per resample ((n_resamples, n_items) temporaries): moments about zero cancel badly.
    dx = x - (w @ x)[:, None] / total
    dy = y - (w @ y)[:, None] / total
    var_x, var_y = (w * dx * dx).sum(1), (w * dy * dy).sum(1)
    cov = (w * dx * dy).sum(1)
    constant = _constant(x, w) | _constant(y, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.where(constant, 1, var_x * var_y))
    return np.where(constant, np.nan, np.clip(r, -1, 1))


def _constant(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_resamples,) bool: whether the items a resample draws all hold one value."""
    drawn = weights > 0
    return np.where(drawn, values, np.inf).min(1) == np.where(drawn, values, -np.inf).max(1)


def weighted_rmse(prediction: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Root mean squared error with items counted by their weights."""
    w = np.asarray(weights, dtype=np.float64)
    return np.sqrt(w @ ((np.asarray(prediction, float) - np.asarray(target, float)) ** 2) / w.sum(1))


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman rho of each resample, the items repeated by their weights (scipy's spearmanr on
    the materialised resample, ties averaged; NaN where a side is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = np.empty(len(weights))
    for row, w in enumerate(np.asarray(weights)):
        index = np.repeat(np.arange(len(x)), w)
        xs, ys = x[index], y[index]
        out[row] = math.nan if xs.min() == xs.max() or ys.min() == ys.max() else scipy.stats.spearmanr(xs, ys).statistic
    return out


def weighted_auc(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of ``score`` for the boolean ``positive``, items counted by their weights: the
    Mann-Whitney form P(score of a positive > score of a negative) + P(tie) / 2, over the
    weighted pairs; NaN where a resample has no positive or no negative. Equals sklearn's
    roc_auc_score with the weights as sample_weight.

    Scores are sorted once; per resample, the positive and negative weight of each distinct score
    are summed, and each positive group meets the negative weight strictly below it plus half
    the negative weight tied with it.
    """
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w_sorted = w[:, order]
    pos_sorted = positive[order]
    pos_group = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)
    neg_group = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
    neg_below = np.cumsum(neg_group, axis=1) - neg_group
    pairs = pos_group.sum(1) * neg_group.sum(1)
    wins = (pos_group * (neg_below + 0.5 * neg_group)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)
