"""A bootstrap interval of the family-specific count (issue 16, item 4): how many latents reach
test F1 > f1_cutoff when the test proteins are resampled.

Each latent keeps the (family, threshold) pair and normalising maximum that `family_f1_sweep`
chose on train (the train split is not resampled; nothing is re-chosen). A resample draws the
test proteins with replacement (`protsae.bootstrap.unit_weights`, one unit per protein: the
evaluation set holds one representative per sequence cluster already), and each latent's test
F1 under the resample is re-scored from three weighted sums over test proteins:

    predicted = sum of w_p over the proteins at or above the latent's threshold,
    TP        = the same over those that also carry its family,
    support   = sum of w_p over the proteins carrying its family,
    F1        = 2 TP / (predicted + support) (0 when TP = 0).

Vectorised over latents and resamples: the predicted and true-positive proteins of every scored
latent are sparse (latent x test protein) indicator matrices and the family members one (family
x test protein) matrix, so each block of resamples is three sparse-dense products. A latent that
predicts most test proteins is stored as its complement (predicted = total weight minus the
weight of the rest), which keeps every row at most half the test set.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse

from protsae.bootstrap import BootstrapSettings, percentile_interval, weight_blocks
from protsae.codes.maxima import MaxActivations
from protsae.latents.specificity import _chunks, _coo, _prepare, chosen_pairs


def _indicator(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    data = np.ones(rows.size, dtype=np.float32)
    return scipy.sparse.csr_matrix((data, (rows, columns)), shape=shape, dtype=np.float32)


def resampled_family_f1(table: pd.DataFrame, maxima: MaxActivations, split: pd.Series | Mapping[str, str],
                        labels: pd.DataFrame, settings: BootstrapSettings,
                        block: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Each scored latent's test F1 under each resample: (n_scored, n_resamples) float64, rows
    in table order, and the test protein ids (n_test,) whose
    ``protsae.bootstrap.unit_weights(ids, n_resamples, seed)`` rows are the resamples.

    table: `family_f1_sweep`'s table on the same maxima, split and labels. The weights are drawn
    ``block`` resamples at a time.
    """
    problem = _prepare(maxima, split, labels)
    scored = table[table["status"] == "scored"]
    n_scored = len(scored)
    latent_ids = scored["latent"].to_numpy(dtype=np.int64)
    slot_of = np.full(maxima.n_latents, -1, dtype=np.int64)
    slot_of[latent_ids] = np.arange(n_scored)
    divisor, threshold, family = chosen_pairs(scored, maxima.n_latents, problem.families)
    test = np.flatnonzero(problem.is_test)
    test_position = np.full(problem.is_test.size, -1, dtype=np.int64)
    test_position[test] = np.arange(test.size)

    # The predicted (and true-positive) test proteins of each scored latent, as in gap_candidates.
    predicted_parts, hit_parts = [], []
    all_protein, all_latent, all_value = _coo(maxima)
    for part in _chunks(all_value.size):
        latent = all_latent[part].astype(np.int64)
        protein = all_protein[part]
        keep = np.flatnonzero((slot_of[latent] >= 0) & problem.is_test[protein])
        latent, protein = latent[keep], protein[keep]
        at_threshold = all_value[part][keep].astype(np.float64) / divisor[latent] >= threshold[latent]
        latent, protein = latent[at_threshold], protein[at_threshold]
        hit = problem.has_label(protein, family[latent])
        predicted_parts.append((slot_of[latent], test_position[protein]))
        hit_parts.append((slot_of[latent[hit]], test_position[protein[hit]]))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    predicted_slot, predicted_column = (np.concatenate(c) for c in zip(*predicted_parts)) if predicted_parts else empty
    hit_slot, hit_column = (np.concatenate(c) for c in zip(*hit_parts)) if hit_parts else empty
    shape = (n_scored, test.size)
    # Rows predicting over half the test set are stored as their complement (predicted = total
    # weight - the rest's), so no row holds more than half the test proteins.
    dense_rows = np.bincount(predicted_slot, minlength=n_scored) > test.size / 2
    sparse_entry = ~dense_rows[predicted_slot]
    rest_slot, rest_column = _complement(predicted_slot[~sparse_entry], predicted_column[~sparse_entry],
                                         np.flatnonzero(dense_rows), test.size)
    predicted = _indicator(np.r_[predicted_slot[sparse_entry], rest_slot],
                           np.r_[predicted_column[sparse_entry], rest_column], shape)
    true_positive = _indicator(hit_slot, hit_column, shape)

    # Family members among the test proteins, one row per family chosen by some latent.
    chosen, family_row = np.unique(family[latent_ids], return_inverse=True)
    label_protein = np.repeat(np.arange(problem.is_test.size), problem.n_labels)
    label_family = problem.label_family[:-1]
    member = problem.is_test[label_protein] & np.isin(label_family, chosen)
    members = _indicator(np.searchsorted(chosen, label_family[member]), test_position[label_protein[member]],
                         (chosen.size, test.size))

    test_ids = problem.ids(test)
    out = []
    for weights in weight_blocks(test_ids, settings.n_resamples, settings.seed, block):
        w = np.ascontiguousarray(np.asarray(weights, dtype=np.float32).T)  # (n_test, block)
        total = w.sum(0)
        predicted_weight = np.asarray(predicted @ w, dtype=np.float64)
        predicted_weight[dense_rows] = total - predicted_weight[dense_rows]
        tp = np.asarray(true_positive @ w, dtype=np.float64)
        support = np.asarray(members @ w, dtype=np.float64)[family_row]
        f1 = np.zeros(tp.shape)
        np.divide(2.0 * tp, predicted_weight + support, out=f1, where=tp > 0)
        out.append(f1)
    return np.concatenate(out, axis=1), test_ids


def _complement(slot: np.ndarray, column: np.ndarray, rows: np.ndarray, n_columns: int,
                max_cells: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """The (slot, column) cells of ``rows`` (sorted slots) that the entries (slot, column) do not
    hold, a boolean block of at most ``max_cells`` at a time."""
    order = np.argsort(slot, kind="stable")
    slot, column = slot[order], column[order]
    per_block = max(1, max_cells // max(n_columns, 1))
    out_slot, out_column = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, rows.size, per_block):
        block = rows[start : start + per_block]
        lo, hi = np.searchsorted(slot, block[0], "left"), np.searchsorted(slot, block[-1], "right")
        free = np.ones((block.size, n_columns), dtype=bool)
        free[np.searchsorted(block, slot[lo:hi]), column[lo:hi]] = False
        local, free_column = np.nonzero(free)
        out_slot.append(block[local])
        out_column.append(free_column)
    return np.concatenate(out_slot), np.concatenate(out_column)


def family_count_interval(table: pd.DataFrame, maxima: MaxActivations, split: pd.Series | Mapping[str, str],
                          labels: pd.DataFrame, f1_cutoff: float, settings: BootstrapSettings,
                          block: int = 100) -> dict:
    """The percentile interval of the family-specific count over test-protein resamples (ends
    that are resampled counts, `percentile_interval`'s discrete form), as
    family_summary.json keys: n_family_specific_low / _high, share_family_specific_low / _high
    (of all latents), bootstrap_unit ("protein"), bootstrap_n_units (test proteins),
    bootstrap_n_resamples, bootstrap_seed, bootstrap_confidence."""
    f1, ids = resampled_family_f1(table, maxima, split, labels, settings, block)
    counts = (f1 > f1_cutoff).sum(0)
    low, high = percentile_interval(counts, settings.confidence, discrete=True)
    n_latents = len(table)
    return {
        "n_family_specific_low": low,
        "n_family_specific_high": high,
        "share_family_specific_low": low / n_latents if n_latents else math.nan,
        "share_family_specific_high": high / n_latents if n_latents else math.nan,
        "bootstrap_unit": "protein",
        "bootstrap_n_units": int(ids.size),
        "bootstrap_n_resamples": settings.n_resamples,
        "bootstrap_seed": settings.seed,
        "bootstrap_confidence": settings.confidence,
    }
