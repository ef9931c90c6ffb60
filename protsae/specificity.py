"""Family specificity of SAE latents (METHODS.md section 5, paper A.3).

For latent j, the train split alone chooses:

* the normalising maximum m_j: the latent's largest per-protein maximum over train proteins;
* the top protein: the train protein holding m_j (ties: the protein whose id sorts first);
* the candidate families: the top protein's families.

A protein is predicted "in family f at threshold t" when its maximum / m_j >= t (the ratio in
float64; proteins the latent never fires on have ratio 0). Of all (candidate family, threshold)
pairs the one with the best train F1 is kept; ties go to the lower threshold, then to the family
accession that sorts first. That pair, with the same m_j, is applied to the test proteins, whose
ratios may exceed 1. A latent is family-specific when its test F1 > 0.7.

F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (n_predicted + support), and 0 when TP = 0; precision is 0
when nothing is predicted and recall is 0 when the family has no protein in the split.

Latents that never fire on a train protein, or whose top protein has no family, get no score
(``status`` says which). Every protein of the split counts, including proteins no latent ever
fired on (all-zero rows, so negatives, and positives of the family support when labelled).

The sweep is vectorised over latents, thresholds and candidate families and holds only arrays of
the size of the non-zeros: two passes over the non-zeros in fixed-size chunks (the train maxima;
then the threshold bin of every entry whose ratio reaches the lowest threshold, found with an
exact per-latent float32 cutoff so that most entries are never divided), then bincounts over
(latent, threshold) and (latent, candidate family, threshold). Every ratio is compared as
float64(value) / float64(m_j) >= t, so the result equals a per-latent loop's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .encoding import MaxActivations

DEFAULT_THRESHOLDS = np.round(np.arange(1, 10) / 10, 1)
"""0.1, 0.2, ..., 0.9, as in the paper."""

STATUSES = ("scored", "never_fires_on_train", "top_protein_unlabelled")

SWEEP_COLUMNS = (
    "latent", "status", "top_protein", "norm_max", "family", "family_name", "threshold", "train_f1",
    "test_f1", "test_precision", "test_recall", "test_support", "test_predicted", "train_support",
)

GAP_COLUMNS = (
    "latent", "family", "family_name", "test_f1", "threshold", "protein", "activation", "normalised",
    "rank", "protein_families",
)

# Entries handled per step of a pass over the non-zeros: large enough that numpy's per-call
# overhead is small, small enough that the per-chunk temporaries (~1 MB each) stay in cache.
_CHUNK = 1 << 17


@dataclass
class _Problem:
    """The evaluation proteins and their labels as integer arrays.

    protein_ids: (n_proteins,) the rows of ``maxima`` first, then split proteins that no latent
    fired on. is_train, is_test: (n_proteins,) bool. families: (n_families,) object, accessions
    sorted, so a family's index is its accession's rank. family_names: (n_families,) object.
    label_ptr: (n_proteins + 1,) int64, n_labels: (n_proteins,) int64 and label_family:
    (total labels + 1,) int64: each protein's families (sorted, distinct) are
    label_family[label_ptr[p]:label_ptr[p + 1]]; a -1 sentinel ends label_family, so
    label_ptr[p] is a valid index even for a protein without labels. first_family:
    (n_proteins,) int64, each protein's first family, -2 (matching nothing) when it has none.
    """

    protein_ids: pd.Index
    is_train: np.ndarray
    is_test: np.ndarray
    families: np.ndarray
    family_names: np.ndarray
    label_ptr: np.ndarray
    n_labels: np.ndarray
    label_family: np.ndarray
    first_family: np.ndarray

    def ids(self, protein: np.ndarray) -> np.ndarray:
        """(n,) object: the ids of protein indices."""
        return self.protein_ids.take(protein).to_numpy(dtype=object)

    def has_label(self, protein: np.ndarray, family: np.ndarray) -> np.ndarray:
        """(n,) bool: whether protein[i] carries family[i] (family -1: never).

        A protein has a handful of families, so comparing slot by slot (one pass per slot, over
        the proteins that have that many) beats a binary search over all labels.
        """
        found = self.first_family[protein] == family
        pending = np.flatnonzero(self.n_labels[protein] > 1)
        start, n_labels = self.label_ptr[protein[pending]], self.n_labels[protein[pending]]
        slot = 1
        while pending.size:
            found[pending] |= self.label_family[start + slot] == family[pending]
            slot += 1
            more = np.flatnonzero(n_labels > slot)
            pending, start, n_labels = pending[more], start[more], n_labels[more]
        return found

    def support(self, in_split: np.ndarray) -> np.ndarray:
        """(n_families,) int64: proteins of the split carrying each family."""
        label_protein = np.repeat(np.arange(len(self.protein_ids)), self.n_labels)
        return np.bincount(self.label_family[:-1][in_split[label_protein]], minlength=len(self.families))


def _prepare(maxima: MaxActivations, split: pd.Series | Mapping[str, str], labels: pd.DataFrame) -> _Problem:
    split = pd.Series(split, dtype=object) if isinstance(split, Mapping) else split
    # Ids as Python objects: pandas hashes them several times faster than its Arrow strings.
    split_ids = pd.Index(split.index.to_numpy(dtype=object), dtype=object)
    if split_ids.has_duplicates:
        raise ValueError(f"split lists protein {split_ids[split_ids.duplicated()][0]!r} twice")
    split_train = (split == "train").to_numpy(dtype=bool)
    split_test = (split == "test").to_numpy(dtype=bool)
    unknown = np.flatnonzero(~(split_train | split_test))
    if unknown.size:
        raise ValueError(f"split value {split.iloc[unknown[0]]!r} (protein {split_ids[unknown[0]]!r}) "
                         "is neither 'train' nor 'test'")
    row_ids = pd.Index(maxima.protein_ids, dtype=object)
    if row_ids.has_duplicates:
        raise ValueError(f"maxima list protein {row_ids[row_ids.duplicated()][0]!r} twice")
    # get_indexer, not isin: pandas' isin on string indexes loops in Python.
    split_row = split_ids.get_indexer(row_ids)
    missing = np.flatnonzero(split_row < 0)
    if missing.size:
        raise ValueError(f"protein {row_ids[missing[0]]!r} of the maxima is not in the split")
    only_in_split = np.ones(len(split), dtype=bool)
    only_in_split[split_row] = False
    protein_ids = row_ids.append(split_ids[only_in_split])

    missing_columns = {"protein", "accession", "name"} - set(labels.columns)
    if missing_columns:
        raise ValueError(f"labels lack column(s) {sorted(missing_columns)}")
    label_protein = protein_ids.get_indexer(labels["protein"].to_numpy(dtype=object))
    in_set = np.flatnonzero(label_protein >= 0)
    family, families = pd.factorize(labels["accession"].iloc[in_set], sort=True)
    n_families = max(len(families), 1)
    _, first = np.unique(family, return_index=True)
    keys = np.unique(label_protein[in_set].astype(np.int64) * n_families + family)
    label_ptr = np.searchsorted(keys // n_families, np.arange(len(protein_ids) + 1))
    n_labels = np.diff(label_ptr)
    label_family = np.r_[keys % n_families, -1]
    return _Problem(
        protein_ids=protein_ids,
        is_train=np.r_[split_train[split_row], split_train[only_in_split]],
        is_test=np.r_[split_test[split_row], split_test[only_in_split]],
        families=np.asarray(families, dtype=object),
        family_names=labels["name"].iloc[in_set].to_numpy(dtype=object)[first],
        label_ptr=label_ptr,
        n_labels=n_labels,
        label_family=label_family,
        first_family=np.where(n_labels > 0, label_family[label_ptr[:-1]], -2),
    )


def _validated_thresholds(thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """(T,) float64, sorted, distinct, in (0, 1]."""
    thresholds = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
    if thresholds.size == 0 or not (thresholds[0] > 0 and thresholds[-1] <= 1):
        raise ValueError("thresholds must be non-empty and in (0, 1]")
    if np.any(thresholds[1:] == thresholds[:-1]):
        raise ValueError("thresholds must be distinct")
    return thresholds


def _coo(maxima: MaxActivations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """protein (int64), latent (int32), value (float32) of ``maxima`` as views with numpy's own
    dtype instances: ufunc.at takes its fast path only for those, and an unpickled array carries
    an equal but distinct instance (20x slower)."""
    protein = np.asarray(maxima.protein, dtype=np.int64).view(np.int64)
    latent = np.asarray(maxima.latent, dtype=np.int32).view(np.int32)
    value = np.asarray(maxima.value, dtype=np.float32).view(np.float32)
    if not protein.shape == latent.shape == value.shape:
        raise ValueError("maxima's protein, latent and value differ in length")
    return protein, latent, value


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _train_maxima(maxima: MaxActivations, is_train: np.ndarray) -> np.ndarray:
    """(n_latents,) float32: each latent's largest value over train proteins, 0 when none."""
    protein, latent, value = _coo(maxima)
    norm_max = np.zeros(maxima.n_latents, dtype=np.float32)
    for part in _chunks(value.size):
        if not value[part].min() > 0:  # also catches NaN
            raise ValueError("maxima values must be > 0 (inactive pairs are absent)")
        train = is_train[protein[part]]
        np.maximum.at(norm_max, latent[part][train], value[part][train])
    return norm_max


@dataclass
class _Pass:
    """What one pass over the non-zeros keeps, given the train maxima.

    predicted: (n_latents, T) int64, train proteins at or above each threshold.
    top_latent, top_protein: the train entries at their latent's maximum (ratio exactly 1).
    train_*: the entries of labelled train proteins that reach the lowest threshold, the only
    ones that can be true positives; test_*: the test entries that reach it. Each as protein
    (int64), latent (int32) and bin (uint8, the number of thresholds t with ratio >= t, 1..T).
    """

    predicted: np.ndarray
    top_latent: np.ndarray
    top_protein: np.ndarray
    train_protein: np.ndarray
    train_latent: np.ndarray
    train_bin: np.ndarray
    test_protein: np.ndarray
    test_latent: np.ndarray
    test_bin: np.ndarray


def _reaching_cutoff(norm_max: np.ndarray, threshold: float) -> np.ndarray:
    """(n_latents,) float32: the smallest float32 v with float64(v) / float64(norm_max) >= threshold,
    +inf where norm_max is 0.

    Correctly rounded division is monotone in v, so ``value >= cutoff`` is exactly
    ``value / norm_max >= threshold``, answered without dividing. The product is within an ulp
    of the cutoff; the two loops step it onto the exact one.
    """
    fires = norm_max > 0
    norm = norm_max[fires].astype(np.float64)
    cutoff = (threshold * norm).astype(np.float32)
    while True:
        short = cutoff.astype(np.float64) / norm < threshold
        if not short.any():
            break
        cutoff[short] = np.nextafter(cutoff[short], np.float32(np.inf))
    while True:
        lower = np.nextafter(cutoff, np.float32(0))
        over = lower.astype(np.float64) / norm >= threshold
        if not over.any():
            break
        cutoff[over] = lower[over]
    all_cutoffs = np.full(norm_max.shape, np.inf, dtype=np.float32)
    all_cutoffs[fires] = cutoff
    return all_cutoffs


def _threshold_pass(maxima: MaxActivations, norm_max: np.ndarray, thresholds: np.ndarray,
                    problem: _Problem) -> _Pass:
    """The second pass: bins of the entries reaching the lowest threshold, train counts per bin."""
    n_bins = thresholds.size + 1
    predicted_counts = np.zeros(maxima.n_latents * n_bins, dtype=np.int64)
    is_labelled = problem.n_labels > 0
    # A latent with no train maximum has cutoff +inf: its test entries drop out.
    cutoff = _reaching_cutoff(norm_max, thresholds[0])
    all_protein, all_latent, all_value = _coo(maxima)
    top, train_kept, test_kept = [], [], []
    for part in _chunks(all_value.size):
        latent, value = all_latent[part], all_value[part]
        keep = np.flatnonzero(value >= cutoff[latent])
        latent, protein = latent[keep], all_protein[part][keep]
        ratio = np.divide(value[keep], norm_max[latent], dtype=np.float64)
        # Counting the comparisons ratio >= t themselves keeps the bins exact.
        bins = np.ones(keep.size, dtype=np.uint8)
        for threshold in thresholds[1:]:
            bins += ratio >= threshold
        train = problem.is_train[protein]
        train_entries = np.flatnonzero(train)
        predicted_counts += np.bincount(latent[train_entries].astype(np.int64) * n_bins + bins[train_entries],
                                        minlength=predicted_counts.size)
        # ratio == 1 exactly iff value == norm_max: float32 neighbours differ by far more than
        # one float64 rounding.
        at_max = train_entries[ratio[train_entries] == 1.0]
        top.append((latent[at_max], protein[at_max]))
        labelled = train_entries[is_labelled[protein[train_entries]]]
        train_kept.append((protein[labelled], latent[labelled], bins[labelled]))
        test = np.flatnonzero(~train)
        test_kept.append((protein[test], latent[test], bins[test]))

    def joined(parts: list[tuple[np.ndarray, ...]], dtypes: tuple) -> list[np.ndarray]:
        return [np.concatenate(column) for column in zip(*parts)] if parts else [np.zeros(0, d) for d in dtypes]

    entry_dtypes = (np.int64, np.int32, np.uint8)
    return _Pass(_reverse_cumsum(predicted_counts.reshape(maxima.n_latents, n_bins)),
                 *joined(top, (np.int32, np.int64)), *joined(train_kept, entry_dtypes), *joined(test_kept, entry_dtypes))


def _top_proteins(top_latent: np.ndarray, top_protein: np.ndarray, n_latents: int,
                  protein_ids: pd.Index) -> np.ndarray:
    """(n_latents,) int64: the train protein holding each latent's maximum, the id sorting first
    among ties; -1 for latents that never fire on train."""
    _, id_rank = np.unique(protein_ids.take(top_protein).to_numpy(dtype=str), return_inverse=True)
    order = np.lexsort((id_rank, top_latent))
    latent = top_latent[order]
    first = np.flatnonzero(np.r_[True, latent[1:] != latent[:-1]]) if latent.size else latent
    top = np.full(n_latents, -1, dtype=np.int64)
    top[latent[first]] = top_protein[order][first]
    return top


def _reverse_cumsum(counts: np.ndarray) -> np.ndarray:
    """counts (n, T + 1) per bin -> (n, T): column i holds the entries of bin > i, that is the
    entries at or above threshold i."""
    return np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]


def _f1(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> np.ndarray:
    f1 = np.zeros(np.broadcast(tp, predicted, support).shape, dtype=np.float64)
    np.divide(2.0 * tp, predicted + support, out=f1, where=tp > 0)
    return f1


def family_f1_sweep(
    maxima: MaxActivations,
    split: pd.Series | Mapping[str, str],
    labels: pd.DataFrame,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """Best (family, threshold) of every latent on train, scored on test.

    maxima: per-protein maxima over all evaluation proteins. split: protein id -> "train" | "test"
    (Series or dict); it must cover every protein of ``maxima``, and its proteins missing from
    ``maxima`` are all-zero rows. labels: one row per (protein, family) with columns protein,
    accession, name, already restricted to the family types in use; rows of proteins outside the
    split are ignored. thresholds: distinct values in (0, 1].

    Returns one row per latent (n_latents rows, by latent): latent, status (`STATUSES`),
    top_protein, norm_max (float64, the train maximum), family (accession), family_name,
    threshold, train_f1, test_f1, test_precision, test_recall, test_support (test proteins in the
    family), test_predicted (test proteins at or above the threshold), train_support. Latents
    that are not scored have NaN or missing values from top_protein (never fires) or family on.
    """
    thresholds = _validated_thresholds(thresholds)
    n_thresholds, n_latents = thresholds.size, maxima.n_latents
    problem = _prepare(maxima, split, labels)
    norm_max = _train_maxima(maxima, problem.is_train)
    counted = _threshold_pass(maxima, norm_max, thresholds, problem)
    top = _top_proteins(counted.top_latent, counted.top_protein, n_latents, problem.protein_ids)

    # Candidate (latent, family) pairs, by latent then accession: the top protein's families.
    fires = top >= 0
    n_candidates = np.zeros(n_latents, dtype=np.int64)
    n_candidates[fires] = problem.n_labels[top[fires]]
    pair_latent = np.repeat(np.arange(n_latents), n_candidates)
    pair_start = np.cumsum(n_candidates) - n_candidates
    pair_family = problem.label_family[problem.label_ptr[top[pair_latent]] + np.arange(pair_latent.size)
                                       - pair_start[pair_latent]]

    # TP per (pair, threshold), one candidate slot at a time: slot k holds each latent's k-th
    # candidate family (-1 where it has fewer), tested against the latent's labelled train entries.
    n_bins = n_thresholds + 1
    tp_counts = np.zeros(pair_latent.size * n_bins, dtype=np.int64)
    protein, latent, bins = counted.train_protein, counted.train_latent, counted.train_bin
    for slot in range(int(n_candidates.max(initial=0))):
        with_slot = np.flatnonzero(n_candidates > slot)
        slot_family = np.full(n_latents, -1, dtype=np.int64)
        slot_family[with_slot] = pair_family[pair_start[with_slot] + slot]
        if slot:
            # From slot 1 on, only the entries of latents with that many candidates (most have one).
            keep = np.flatnonzero(slot_family[latent] >= 0)
            protein, latent, bins = protein[keep], latent[keep], bins[keep]
        hit = np.flatnonzero(problem.has_label(protein, slot_family[latent]))
        tp_counts += np.bincount((pair_start[latent[hit]] + slot) * n_bins + bins[hit], minlength=tp_counts.size)
    train_tp = _reverse_cumsum(tp_counts.reshape(pair_latent.size, n_bins))
    train_support = problem.support(problem.is_train)
    train_f1 = _f1(train_tp, counted.predicted[pair_latent], train_support[pair_family][:, None])

    # Best per latent: highest F1, then lowest threshold, then first accession (= lowest index).
    option_pair = np.repeat(np.arange(pair_latent.size), n_thresholds)
    option_threshold = np.tile(np.arange(n_thresholds), pair_latent.size)
    order = np.lexsort((pair_family[option_pair], option_threshold, -train_f1.ravel(), pair_latent[option_pair]))
    ordered_latent = pair_latent[option_pair[order]]
    best = order[np.flatnonzero(np.r_[True, ordered_latent[1:] != ordered_latent[:-1]])] if order.size else order
    scored = pair_latent[option_pair[best]]
    chosen_family = np.full(n_latents, -1, dtype=np.int64)
    chosen_threshold = np.full(n_latents, n_thresholds, dtype=np.int64)
    chosen_family[scored] = pair_family[option_pair[best]]
    chosen_threshold[scored] = option_threshold[best]

    # Test side, for the chosen pair only: predicted when bin > chosen threshold index.
    positive = np.flatnonzero(counted.test_bin > chosen_threshold[counted.test_latent])
    positive_latent = counted.test_latent[positive]
    test_predicted = np.bincount(positive_latent, minlength=n_latents)
    test_tp = np.bincount(
        positive_latent[problem.has_label(counted.test_protein[positive], chosen_family[positive_latent])],
        minlength=n_latents,
    )[scored]
    test_support = problem.support(problem.is_test)[chosen_family[scored]]
    test_predicted = test_predicted[scored]

    status = np.full(n_latents, "never_fires_on_train", dtype=object)
    status[fires] = "top_protein_unlabelled"
    status[scored] = "scored"
    top_protein = np.full(n_latents, None, dtype=object)
    top_protein[fires] = problem.ids(top[fires])
    table = pd.DataFrame({
        "latent": np.arange(n_latents, dtype=np.int64),
        "status": status,
        "top_protein": top_protein,
        "norm_max": np.where(fires, norm_max.astype(np.float64), np.nan),
    })
    score_columns = {
        "family": problem.families[chosen_family[scored]],
        "family_name": problem.family_names[chosen_family[scored]],
        "threshold": thresholds[chosen_threshold[scored]],
        "train_f1": train_f1.ravel()[best],
        "test_f1": _f1(test_tp, test_predicted, test_support),
        "test_precision": _ratio_or_zero(test_tp, test_predicted),
        "test_recall": _ratio_or_zero(test_tp, test_support),
        "test_support": test_support,
        "test_predicted": test_predicted,
        "train_support": train_support[chosen_family[scored]],
    }
    unscored = np.ones(n_latents, dtype=bool)
    unscored[scored] = False
    for name, values in score_columns.items():
        if values.dtype.kind in "iu":
            column = np.zeros(n_latents, dtype=np.int64)
            column[scored] = values
            table[name] = pd.arrays.IntegerArray(column, unscored)
        else:
            column = np.full(n_latents, np.nan if values.dtype.kind == "f" else None, dtype=values.dtype)
            column[scored] = values
            table[name] = column
    for name in ("status", "top_protein", "family", "family_name"):
        # The same dtype whether or not any latent is scored (all-missing columns would be object).
        table[name] = table[name].astype("str")
    return table[list(SWEEP_COLUMNS)]


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def summarise_family_f1(table: pd.DataFrame, f1_cutoff: float = 0.7) -> dict:
    """Counts and shares of a `family_f1_sweep` table; family-specific means test F1 > f1_cutoff.

    Keys: n_latents, n_scored, n_never_fires_on_train, n_top_protein_unlabelled,
    n_family_specific, share_family_specific (of all latents), share_family_specific_of_scored,
    n_families_covered (distinct families of the family-specific latents), median_test_f1 (of
    scored latents; NaN when none), f1_cutoff.
    """
    scored = table[table["status"] == "scored"]
    specific = scored[scored["test_f1"] > f1_cutoff]
    n_latents, n_scored, n_specific = len(table), len(scored), len(specific)
    return {
        "n_latents": n_latents,
        "n_scored": n_scored,
        "n_never_fires_on_train": int((table["status"] == "never_fires_on_train").sum()),
        "n_top_protein_unlabelled": int((table["status"] == "top_protein_unlabelled").sum()),
        "n_family_specific": n_specific,
        "share_family_specific": n_specific / n_latents if n_latents else float("nan"),
        "share_family_specific_of_scored": n_specific / n_scored if n_scored else float("nan"),
        "n_families_covered": int(specific["family"].nunique()),
        "median_test_f1": float(scored["test_f1"].median()) if n_scored else float("nan"),
        "f1_cutoff": f1_cutoff,
    }


def gap_candidates(
    table: pd.DataFrame,
    maxima: MaxActivations,
    split: pd.Series | Mapping[str, str],
    labels: pd.DataFrame,
    f1_cutoff: float = 0.7,
) -> pd.DataFrame:
    """Annotation-gap candidates: test proteins a family-specific latent calls but that lack the
    family's label.

    For every latent of ``table`` (from `family_f1_sweep` on the same maxima, split and labels)
    with test F1 > f1_cutoff: the test proteins whose maximum / norm_max >= the chosen threshold
    and that do not carry the chosen family. Columns: latent, family, family_name, test_f1,
    threshold, protein, activation (the protein's maximum, float64), normalised (activation /
    norm_max), rank (1 = highest activation within the latent; ties by protein id),
    protein_families (the protein's own accessions, sorted, ';'-joined, '' when none). Rows are
    sorted by test_f1 (descending), latent, rank.
    """
    problem = _prepare(maxima, split, labels)
    specific = table[(table["status"] == "scored") & (table["test_f1"] > f1_cutoff)]
    latent_ids = specific["latent"].to_numpy(dtype=np.int64)
    is_specific = np.zeros(maxima.n_latents, dtype=bool)
    is_specific[latent_ids] = True
    divisor = np.full(maxima.n_latents, np.inf)
    divisor[latent_ids] = specific["norm_max"].to_numpy(dtype=np.float64)
    threshold = np.full(maxima.n_latents, np.inf)
    threshold[latent_ids] = specific["threshold"].to_numpy(dtype=np.float64)
    family = np.full(maxima.n_latents, -1, dtype=np.int64)
    family[latent_ids] = pd.Index(problem.families).get_indexer(specific["family"].to_numpy(dtype=object))

    all_protein, all_latent, all_value = _coo(maxima)
    kept: list[tuple[np.ndarray, ...]] = []
    for part in _chunks(all_value.size):
        latent = all_latent[part].astype(np.int64)
        protein = all_protein[part]
        candidate = np.flatnonzero(is_specific[latent] & problem.is_test[protein])
        latent, protein, value = latent[candidate], protein[candidate], all_value[part][candidate]
        normalised = value.astype(np.float64) / divisor[latent]
        gap = (normalised >= threshold[latent]) & ~problem.has_label(protein, family[latent])
        kept.append((latent[gap], protein[gap], value[gap].astype(np.float64), normalised[gap]))
    latent, protein, activation, normalised = (
        (np.concatenate(column) for column in zip(*kept)) if kept
        else (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    )

    ids = problem.ids(protein).astype(str)
    order = np.lexsort((ids, -activation, latent))
    latent, protein, activation, normalised, ids = (a[order] for a in (latent, protein, activation, normalised, ids))
    group_start = np.flatnonzero(np.r_[True, latent[1:] != latent[:-1]]) if latent.size else latent
    rank = np.arange(latent.size) - np.repeat(group_start, np.diff(np.r_[group_start, latent.size])) + 1
    own_families = {
        p: ";".join(problem.families[problem.label_family[problem.label_ptr[p]:problem.label_ptr[p + 1]]])
        for p in np.unique(protein).tolist()
    }
    by_latent = specific.set_index("latent")
    gaps = pd.DataFrame(columns=list(GAP_COLUMNS), data={
        "latent": latent,
        "family": by_latent["family"].reindex(latent).to_numpy(dtype=object),
        "family_name": by_latent["family_name"].reindex(latent).to_numpy(dtype=object),
        "test_f1": by_latent["test_f1"].reindex(latent).to_numpy(dtype=np.float64),
        "threshold": threshold[latent],
        "protein": ids.astype(object),
        "activation": activation,
        "normalised": normalised,
        "rank": rank.astype(np.int64),
        "protein_families": [own_families[p] for p in protein.tolist()],
    })
    order = np.lexsort((gaps["rank"].to_numpy(), gaps["latent"].to_numpy(), -gaps["test_f1"].to_numpy()))
    return gaps.iloc[order].reset_index(drop=True)
