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

The sweep is vectorised over latents, thresholds and candidate families and holds no array of
the size of the non-zeros: two passes over them in fixed-size chunks.

1. Each latent's train maximum, as a running maximum: only entries at or above it are looked
   at again, and those include every entry holding the final maximum, so the top proteins and
   with them the candidate families are known after this pass.
2. For latents with candidates only, every entry whose ratio reaches the lowest threshold (an
   exact per-latent float32 cutoff picks them without dividing), binned by how many thresholds
   its ratio reaches and counted per (split, latent, bin) and, when its protein carries the
   candidate family, per (split, candidate pair, bin).

Train F1 of every (pair, threshold) and the test counts of the chosen one then come from those
counts. Every ratio is compared as float64(value) / float64(m_j) >= t, so the result equals a
per-latent loop's bit for bit.

``threads`` > 1 spreads the chunks of each pass over a thread pool (numpy's gathers, comparisons
and nonzero release the GIL). Each thread has its own maxima and counts, reduced at the end
with order-free operations (max, sums), so the table does not depend on the number of threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from protsae.codes.maxima import MaxActivations

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
# overhead is small, small enough that the per-chunk temporaries (1-2 MB each) stay in cache.
_CHUNK = 1 << 18
# Keys a _KeyCounter gathers before it counts them.
_KEY_BUFFER = 1 << 20

# Values of _Problem.only_family besides a family index; -1 is "no family" in the family argument
# of has_label, so neither may be -1.
_NO_FAMILY, _SEVERAL_FAMILIES = -2, -3

_R = TypeVar("_R")


@dataclass
class _Problem:
    """The evaluation proteins and their labels as integer arrays.

    protein_ids: (n_proteins,) Arrow strings, the rows of ``maxima`` first, then split proteins
    that no latent fired on. is_train, is_test: (n_proteins,) bool. families: (n_families,)
    object, accessions sorted, so a family's index is its accession's rank. family_names:
    (n_families,) object. label_ptr: (n_proteins + 1,) int64, n_labels: (n_proteins,) int64 and
    label_family: (total labels + 1,) int32: each protein's families (sorted, distinct) are
    label_family[label_ptr[p]:label_ptr[p + 1]]; a -1 sentinel ends label_family, so
    label_ptr[p] is a valid index even for a protein without labels. only_family:
    (n_proteins,) int32, a protein's family when it has exactly one, _NO_FAMILY when it has none
    and _SEVERAL_FAMILIES when it has more (both negative, so they match no family).
    """

    protein_ids: pa.Array
    is_train: np.ndarray
    is_test: np.ndarray
    families: np.ndarray
    family_names: np.ndarray
    label_ptr: np.ndarray
    n_labels: np.ndarray
    label_family: np.ndarray
    only_family: np.ndarray

    def ids(self, protein: np.ndarray) -> np.ndarray:
        """(n,) object: the ids of protein indices."""
        return self.protein_ids.take(protein).to_numpy(zero_copy_only=False)

    def has_label(self, protein: np.ndarray, family: np.ndarray) -> np.ndarray:
        """(n,) bool: whether protein[i] carries family[i] (family -1: never).

        Most proteins have at most one family, answered by one look-up in only_family; the
        others are compared slot by slot (one pass per slot, over the proteins that have that
        many), which beats a binary search over all labels.
        """
        only_family = np.take(self.only_family, protein)
        found = only_family == family
        pending = np.flatnonzero(only_family == _SEVERAL_FAMILIES)
        protein = np.take(protein, pending)
        start, n_labels = np.take(self.label_ptr, protein), np.take(self.n_labels, protein)
        slot = 0
        while pending.size:
            found[pending] |= np.take(self.label_family, start + slot) == np.take(family, pending)
            slot += 1
            more = np.flatnonzero(n_labels > slot)
            pending, start, n_labels = pending[more], start[more], n_labels[more]
        return found

    def support(self, in_split: np.ndarray) -> np.ndarray:
        """(n_families,) int64: proteins of the split carrying each family."""
        label_protein = np.repeat(np.arange(len(self.protein_ids)), self.n_labels)
        return np.bincount(self.label_family[:-1][in_split[label_protein]], minlength=len(self.families))


def _id_array(ids, what: str) -> pa.Array:
    """Protein ids (a list, numpy array, pandas Index or Series of str) as one Arrow array."""
    values = ids.array if isinstance(ids, (pd.Index, pd.Series)) else ids
    try:
        array = pa.array(values, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{what} protein ids must be strings ({error})") from None
    if array.null_count:
        raise ValueError(f"{what} has a missing protein id")
    return array


def _prepare(maxima: MaxActivations, split: pd.Series | Mapping[str, str], labels: pd.DataFrame) -> _Problem:
    split = pd.Series(split, dtype=object) if isinstance(split, Mapping) else split
    missing_columns = {"protein", "accession", "name"} - set(labels.columns)
    if missing_columns:
        raise ValueError(f"labels lack column(s) {sorted(missing_columns)}")
    # One Arrow hash over the rows' ids, then the split's, then the labels': codes follow first
    # appearance, so the rows are proteins 0..n_rows - 1, proteins only in the split follow in
    # split order, and codes past those are label proteins outside the split.
    n_rows, n_split = len(maxima.protein_ids), len(split)
    encoded = pa.chunked_array([
        _id_array(maxima.protein_ids, "maxima"), _id_array(split.index, "split"), _id_array(labels["protein"], "labels"),
    ]).dictionary_encode().combine_chunks()
    codes = encoded.indices.to_numpy()
    row_code, split_code, label_code = codes[:n_rows], codes[n_rows:n_rows + n_split], codes[n_rows + n_split:]
    if not np.array_equal(row_code, np.arange(n_rows)):
        twice = int(np.flatnonzero(row_code != np.arange(n_rows))[0])
        raise ValueError(f"maxima list protein {maxima.protein_ids[twice]!r} twice")
    per_protein = np.bincount(split_code, minlength=n_rows)
    if per_protein.max(initial=1) > 1:
        twice = int(np.flatnonzero(per_protein[split_code] > 1)[0])
        raise ValueError(f"split lists protein {split.index[twice]!r} twice")
    if per_protein[:n_rows].min(initial=1) == 0:
        raise ValueError(f"protein {maxima.protein_ids[int(np.argmin(per_protein[:n_rows]))]!r} "
                         "of the maxima is not in the split")
    n_proteins = per_protein.size
    is_train, is_test = np.zeros(n_proteins, dtype=bool), np.zeros(n_proteins, dtype=bool)
    is_train[split_code] = (split == "train").to_numpy(dtype=bool)
    is_test[split_code] = (split == "test").to_numpy(dtype=bool)
    unknown = np.flatnonzero(~(is_train | is_test)[split_code])
    if unknown.size:
        raise ValueError(f"split value {split.iloc[unknown[0]]!r} (protein {split.index[unknown[0]]!r}) "
                         "is neither 'train' nor 'test'")

    in_set = np.flatnonzero(label_code < n_proteins)
    family, families = pd.factorize(labels["accession"].iloc[in_set], sort=True)
    n_families = max(len(families), 1)
    # Each family's first label row (for its name), and the distinct (protein, family) keys,
    # sorted: a sort, not np.unique, which hashes and is 20x slower here.
    first = np.full(len(families), len(family), dtype=np.int64)
    np.minimum.at(first, family, np.arange(len(family)))
    keys = np.sort(label_code[in_set].astype(np.int64) * n_families + family)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    label_ptr = np.searchsorted(keys // n_families, np.arange(n_proteins + 1))
    n_labels = np.diff(label_ptr)
    label_family = np.r_[keys % n_families, -1].astype(np.int32)
    return _Problem(
        protein_ids=encoded.dictionary.slice(0, n_proteins),
        is_train=is_train,
        is_test=is_test,
        families=np.asarray(families, dtype=object),
        family_names=labels["name"].iloc[in_set].to_numpy(dtype=object)[first],
        label_ptr=label_ptr,
        n_labels=n_labels,
        label_family=label_family,
        only_family=np.select([n_labels == 1, n_labels == 0], [label_family[label_ptr[:-1]], _NO_FAMILY],
                              _SEVERAL_FAMILIES).astype(np.int32),
    )


def _validated_thresholds(thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """(T,) float64, sorted, distinct, in (0, 1]."""
    thresholds = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
    if thresholds.size == 0 or not (thresholds[0] > 0 and thresholds[-1] <= 1):
        raise ValueError("thresholds must be non-empty and in (0, 1]")
    if np.any(thresholds[1:] == thresholds[:-1]):
        raise ValueError("thresholds must be distinct")
    return thresholds


def chosen_pairs(rows: pd.DataFrame, n_latents: int, families) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per latent, the normalising maximum, threshold and family (a position in ``families``)
    that its sweep row chose: (n_latents,) arrays, inf / inf / -1 for latents not in ``rows``."""
    latent_ids = rows["latent"].to_numpy(dtype=np.int64)
    divisor = np.full(n_latents, np.inf)
    divisor[latent_ids] = rows["norm_max"].to_numpy(dtype=np.float64)
    threshold = np.full(n_latents, np.inf)
    threshold[latent_ids] = rows["threshold"].to_numpy(dtype=np.float64)
    family = np.full(n_latents, -1, dtype=np.int64)
    family[latent_ids] = pd.Index(families).get_indexer(rows["family"].to_numpy(dtype=object))
    return divisor, threshold, family


def _coo(maxima: MaxActivations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """protein (int64), latent (int32) and value (float32) of ``maxima``."""
    protein = np.asarray(maxima.protein, dtype=np.int64)
    latent = np.asarray(maxima.latent, dtype=np.int32)
    value = np.asarray(maxima.value, dtype=np.float32)
    if not protein.shape == latent.shape == value.shape:
        raise ValueError("maxima's protein, latent and value differ in length")
    return protein, latent, value


def _chunks(n: int) -> list[slice]:
    return [slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]


def _per_thread(function: Callable[[list[slice]], _R], n: int, threads: int) -> list[_R]:
    """function(share) for each thread's share of the chunks of n entries (every threads-th
    chunk, so that the shares are alike), on a thread pool when threads > 1; one share when
    threads is 1 or there is at most one chunk."""
    parts = _chunks(n)
    n_shares = max(1, min(threads, len(parts)))
    shares = [parts[i::n_shares] for i in range(n_shares)]
    if n_shares == 1:
        return [function(shares[0])]
    with ThreadPoolExecutor(n_shares) as pool:
        return list(pool.map(function, shares))


def _joined(parts: list[tuple[np.ndarray, ...]], dtypes: tuple) -> list[np.ndarray]:
    """Per-chunk tuples of arrays -> one array per tuple position, in chunk order."""
    return [np.concatenate(column) for column in zip(*parts)] if parts else [np.zeros(0, d) for d in dtypes]


@dataclass
class _TrainMaxima:
    """norm_max: (n_latents,) float32, each latent's largest value over train proteins (0 when
    none). top_latent, top_protein: the train entries holding their latent's maximum."""

    norm_max: np.ndarray
    top_latent: np.ndarray
    top_protein: np.ndarray


def _train_maxima(maxima: MaxActivations, is_train: np.ndarray, threads: int = 1) -> _TrainMaxima:
    """The first pass: each latent's train maximum and the entries that hold it.

    Each thread keeps a running maximum over its share of the chunks. Only entries at or above
    it (all of a latent's first entries, then few) are looked at again: the train ones among
    them are written to the running maximum (an assignment with repeated latents keeps one of
    their values, and those still above go round again) and kept, since every entry holding
    the final maximum is among them. No ``np.maximum.at``, which holds the GIL.
    """
    protein, latent, value = _coo(maxima)

    def running_max(share: list[slice]) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
        top = np.zeros(maxima.n_latents, dtype=np.float32)
        kept = []
        for part in share:
            part_latent, part_value = latent[part], value[part]
            if not part_value.min() > 0:  # also catches NaN
                raise ValueError("maxima values must be > 0 (inactive pairs are absent)")
            # Few entries reach the running maximum: their proteins are looked up after.
            reaching = np.flatnonzero(part_value >= np.take(top, part_latent))
            reaching_protein = np.take(protein[part], reaching)
            train = np.flatnonzero(np.take(is_train, reaching_protein))
            reaching_protein, reaching = np.take(reaching_protein, train), np.take(reaching, train)
            rising_latent, rising_value = np.take(part_latent, reaching), np.take(part_value, reaching)
            kept.append((rising_latent, reaching_protein, rising_value))
            while True:
                above = np.flatnonzero(rising_value > np.take(top, rising_latent))
                if not above.size:
                    break
                rising_latent, rising_value = np.take(rising_latent, above), np.take(rising_value, above)
                top[rising_latent] = rising_value
        return top, kept

    per_thread = _per_thread(running_max, value.size, threads)
    norm_max = np.maximum.reduce([top for top, _ in per_thread])
    kept_latent, kept_protein, kept_value = _joined([part for _, kept in per_thread for part in kept],
                                                    (np.int32, np.int64, np.float32))
    at_max = np.flatnonzero(kept_value == np.take(norm_max, kept_latent))
    return _TrainMaxima(norm_max, kept_latent[at_max], kept_protein[at_max])


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


@dataclass
class _Pairs:
    """Candidate (latent, family) pairs, by latent then accession: each scored latent's top
    protein's families. latent: (n_pairs,) int64; family: (n_pairs,) int32; start: (n_latents,)
    each latent's first pair; slot_families: per slot k, (n_latents,) int32, each latent's k-th
    family, -1 where it has fewer."""

    latent: np.ndarray
    family: np.ndarray
    start: np.ndarray
    slot_families: list[np.ndarray]


def _candidate_pairs(top: np.ndarray, problem: _Problem) -> _Pairs:
    """The pairs of each latent whose top protein (``top``, -1: none) carries families."""
    n_candidates = np.zeros(top.size, dtype=np.int64)
    fires = top >= 0
    n_candidates[fires] = problem.n_labels[top[fires]]
    latent = np.repeat(np.arange(top.size), n_candidates)
    start = np.cumsum(n_candidates) - n_candidates
    family = problem.label_family[problem.label_ptr[top[latent]] + np.arange(latent.size) - start[latent]]
    slot_families = []
    for slot in range(int(n_candidates.max(initial=0))):
        with_slot = np.flatnonzero(n_candidates > slot)
        slot_families.append(np.full(top.size, -1, dtype=np.int32))
        slot_families[slot][with_slot] = family[start[with_slot] + slot]
    return _Pairs(latent, family, start, slot_families)


class _KeyCounter:
    """How often each integer key in [0, size) occurs, over many small arrays of keys.

    Keys are copied into a fixed buffer and counted with one bincount whenever it fills: a
    bincount per array would add up the whole count array each time, and one bincount over
    all keys at the end would first allocate them all, which costs more than the counting.
    """

    def __init__(self, size: int, buffer_size: int):
        self._counts = np.zeros(size, dtype=np.int64)
        self._buffer = np.empty(buffer_size, dtype=np.int64)
        self._filled = 0

    def add(self, keys: np.ndarray) -> None:
        if self._filled + keys.size > self._buffer.size:
            self._flush()
        if keys.size > self._buffer.size:
            self._counts += np.bincount(keys, minlength=self._counts.size)
        else:
            self._buffer[self._filled:self._filled + keys.size] = keys
            self._filled += keys.size

    def _flush(self) -> None:
        self._counts += np.bincount(self._buffer[:self._filled], minlength=self._counts.size)
        self._filled = 0

    def counts(self) -> np.ndarray:
        """(size,) int64."""
        self._flush()
        return self._counts


@dataclass
class _Counts:
    """What the second pass counts, for the latents with candidate families; index 0 of the
    first axis is train, 1 test.

    predicted: (2, n_latents, T) int64, proteins at or above each threshold.
    true_positive: (2, n_pairs, T) int64, proteins of the pair's family at or above each.
    """

    predicted: np.ndarray
    true_positive: np.ndarray


def _threshold_pass(maxima: MaxActivations, norm_max: np.ndarray, thresholds: np.ndarray,
                    problem: _Problem, pairs: _Pairs, threads: int = 1) -> _Counts:
    """The second pass, over the entries of latents with candidate families that reach the
    lowest threshold: their threshold bins, counted per latent and per pair, on train and test.

    Each entry gets a key (split, latent or pair, bin), with bin the number of thresholds t
    with ratio >= t (1..T), counted by a `_KeyCounter` per kind of key and thread.
    """
    n_bins, n_latents, n_pairs = thresholds.size + 1, maxima.n_latents, pairs.latent.size
    # Latents without candidates (never firing on train, or an unlabelled top protein) get cutoff
    # +inf: their entries drop out at once.
    has_pairs = np.zeros(n_latents, dtype=bool)
    has_pairs[pairs.latent] = True
    cutoff = np.where(has_pairs, _reaching_cutoff(norm_max, thresholds[0]), np.float32(np.inf))
    all_protein, all_latent, all_value = _coo(maxima)

    def counts(share: list[slice]) -> tuple[np.ndarray, np.ndarray]:
        n_entries = sum(part.stop - part.start for part in share)
        predicted = _KeyCounter(2 * n_latents * n_bins, min(_KEY_BUFFER, n_entries))
        true_positive = _KeyCounter(2 * n_pairs * n_bins, min(_KEY_BUFFER, n_entries))
        for part in share:
            keep = np.flatnonzero(all_value[part] >= np.take(cutoff, all_latent[part]))
            # int64 latents: numpy casts any other index array before each take.
            latent = np.take(all_latent[part], keep).astype(np.int64)
            protein = np.take(all_protein[part], keep)
            ratio = np.divide(np.take(all_value[part], keep), np.take(norm_max, latent), dtype=np.float64)
            # Counting the comparisons ratio >= t themselves keeps the bins exact.
            bins = np.ones(keep.size, dtype=np.uint8)
            for threshold in thresholds[1:]:
                bins += ratio >= threshold
            is_test = np.take(problem.is_test, protein)
            predicted.add((is_test * n_latents + latent) * n_bins + bins)
            # True positives one candidate slot at a time (most latents have one family).
            for slot, slot_family in enumerate(pairs.slot_families):
                family = np.take(slot_family, latent)
                if slot:
                    with_slot = np.flatnonzero(family >= 0)
                    protein, latent, bins, is_test, family = (
                        np.take(a, with_slot) for a in (protein, latent, bins, is_test, family))
                hit = np.flatnonzero(problem.has_label(protein, family))
                pair = np.take(pairs.start, np.take(latent, hit)) + slot
                true_positive.add((np.take(is_test, hit) * n_pairs + pair) * n_bins + np.take(bins, hit))
        return predicted.counts(), true_positive.counts()

    per_thread = _per_thread(counts, all_value.size, threads)
    predicted = sum((predicted for predicted, _ in per_thread), np.zeros(2 * n_latents * n_bins, dtype=np.int64))
    true_positive = sum((true_positive for _, true_positive in per_thread), np.zeros(2 * n_pairs * n_bins, dtype=np.int64))
    return _Counts(_reverse_cumsum(predicted.reshape(2, n_latents, n_bins)),
                   _reverse_cumsum(true_positive.reshape(2, n_pairs, n_bins)))


def _top_proteins(top_latent: np.ndarray, top_protein: np.ndarray, n_latents: int,
                  protein_ids: pa.Array) -> np.ndarray:
    """(n_latents,) int64: the train protein holding each latent's maximum, the id sorting first
    among ties; -1 for latents that never fire on train."""
    top = np.full(n_latents, -1, dtype=np.int64)
    holders = np.bincount(top_latent, minlength=n_latents)
    alone = holders[top_latent] == 1
    top[top_latent[alone]] = top_protein[alone]
    # Ties (several proteins at a latent's maximum) by id; strings only for those.
    tied = np.flatnonzero(~alone)
    _, id_rank = np.unique(protein_ids.take(top_protein[tied]).to_numpy(zero_copy_only=False).astype(str),
                           return_inverse=True)
    order = tied[np.lexsort((id_rank, top_latent[tied]))]
    latent = top_latent[order]
    first = np.flatnonzero(np.r_[True, latent[1:] != latent[:-1]]) if latent.size else latent
    top[latent[first]] = top_protein[order[first]]
    return top


def _reverse_cumsum(counts: np.ndarray) -> np.ndarray:
    """counts (..., T + 1) per bin -> (..., T): column i holds the entries of bin > i, that is
    the entries at or above threshold i."""
    return np.cumsum(counts[..., ::-1], axis=-1)[..., ::-1][..., 1:]


def _f1(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> np.ndarray:
    f1 = np.zeros(np.broadcast(tp, predicted, support).shape, dtype=np.float64)
    np.divide(2.0 * tp, predicted + support, out=f1, where=tp > 0)
    return f1


def family_f1_sweep(
    maxima: MaxActivations,
    split: pd.Series | Mapping[str, str],
    labels: pd.DataFrame,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    threads: int = 1,
) -> pd.DataFrame:
    """Best (family, threshold) of every latent on train, scored on test.

    maxima: per-protein maxima over all evaluation proteins. split: protein id -> "train" | "test"
    (Series or dict); it must cover every protein of ``maxima``, and its proteins missing from
    ``maxima`` are all-zero rows. labels: one row per (protein, family) with columns protein,
    accession, name, already restricted to the family types in use; rows of proteins outside the
    split are ignored. thresholds: distinct values in (0, 1]. threads: numpy work in parallel
    (the table is the same for any number).

    Returns one row per latent (n_latents rows, by latent): latent, status (`STATUSES`),
    top_protein, norm_max (float64, the train maximum), family (accession), family_name,
    threshold, train_f1, test_f1, test_precision, test_recall, test_support (test proteins in the
    family), test_predicted (test proteins at or above the threshold), train_support. Latents
    that are not scored have NaN or missing values from top_protein (never fires) or family on.
    """
    thresholds = _validated_thresholds(thresholds)
    n_thresholds, n_latents = thresholds.size, maxima.n_latents
    problem = _prepare(maxima, split, labels)
    train_maxima = _train_maxima(maxima, problem.is_train, threads)
    norm_max = train_maxima.norm_max
    top = _top_proteins(train_maxima.top_latent, train_maxima.top_protein, n_latents, problem.protein_ids)
    fires = top >= 0
    pairs = _candidate_pairs(top, problem)
    pair_latent, pair_family = pairs.latent, pairs.family
    counted = _threshold_pass(maxima, norm_max, thresholds, problem, pairs, threads)
    train_support = problem.support(problem.is_train)
    train_f1 = _f1(counted.true_positive[0], counted.predicted[0][pair_latent], train_support[pair_family][:, None])

    # Best per latent: highest F1, then lowest threshold, then first accession. Per pair, argmax
    # gives the lowest threshold of the highest F1; pairs are by latent, then accession.
    pair_threshold = np.argmax(train_f1, axis=1)
    pair_f1 = np.take_along_axis(train_f1, pair_threshold[:, None], axis=1)[:, 0]
    order = np.lexsort((np.arange(pair_latent.size), pair_threshold, -pair_f1, pair_latent))
    ordered_latent = pair_latent[order]
    best = order[np.flatnonzero(np.r_[True, ordered_latent[1:] != ordered_latent[:-1]])] if order.size else order
    scored = pair_latent[best]
    chosen_family = np.full(n_latents, -1, dtype=np.int64)
    chosen_threshold = np.full(n_latents, n_thresholds, dtype=np.int64)
    chosen_family[scored] = pair_family[best]
    chosen_threshold[scored] = pair_threshold[best]

    # Test side, for the chosen pair and threshold only.
    test_predicted = counted.predicted[1][scored, chosen_threshold[scored]]
    test_tp = counted.true_positive[1][best, chosen_threshold[scored]]
    test_support = problem.support(problem.is_test)[chosen_family[scored]]

    status = np.full(n_latents, "never_fires_on_train", dtype=object)
    status[fires] = "top_protein_unlabelled"
    status[scored] = "scored"
    top_protein = np.full(n_latents, None, dtype=object)
    top_protein[fires] = problem.ids(top[fires])
    columns = {
        "latent": np.arange(n_latents, dtype=np.int64),
        "status": status,
        "top_protein": top_protein,
        "norm_max": np.where(fires, norm_max.astype(np.float64), np.nan),
    }
    score_columns = {
        "family": problem.families[chosen_family[scored]],
        "family_name": problem.family_names[chosen_family[scored]],
        "threshold": thresholds[chosen_threshold[scored]],
        "train_f1": pair_f1[best],
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
            columns[name] = pd.arrays.IntegerArray(column, unscored)
        else:
            column = np.full(n_latents, np.nan if values.dtype.kind == "f" else None, dtype=values.dtype)
            column[scored] = values
            columns[name] = column
    for name in ("status", "top_protein", "family", "family_name"):
        # The same dtype whether or not any latent is scored (all-missing columns would be object).
        columns[name] = pd.array(columns[name], dtype="str")
    return pd.DataFrame({name: columns[name] for name in SWEEP_COLUMNS})


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def family_specific(table: pd.DataFrame, f1_cutoff: float = 0.7) -> pd.DataFrame:
    """The rows of a `family_f1_sweep` table whose latent is family-specific: scored, test F1 >
    ``f1_cutoff``."""
    return table[(table["status"] == "scored") & (table["test_f1"] > f1_cutoff)]


def summarise_family_f1(table: pd.DataFrame, f1_cutoff: float = 0.7) -> dict:
    """Counts and shares of a `family_f1_sweep` table; family-specific means test F1 > f1_cutoff.

    Keys: n_latents, n_scored, n_never_fires_on_train, n_top_protein_unlabelled,
    n_family_specific, share_family_specific (of all latents), share_family_specific_of_scored,
    n_families_covered (distinct families of the family-specific latents), median_test_f1 (of
    scored latents; NaN when none), f1_cutoff.
    """
    scored = table[table["status"] == "scored"]
    specific = family_specific(table, f1_cutoff)
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
    specific = family_specific(table, f1_cutoff)
    latent_ids = specific["latent"].to_numpy(dtype=np.int64)
    is_specific = np.zeros(maxima.n_latents, dtype=bool)
    is_specific[latent_ids] = True
    divisor, threshold, family = chosen_pairs(specific, maxima.n_latents, problem.families)

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
