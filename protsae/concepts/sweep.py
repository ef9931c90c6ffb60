"""The concept sweep (METHODS.md section 10), vectorised over units, concepts and thresholds.

A *unit* is an SAE latent or one sign of a raw residual dimension. Each unit's activations are
normalised by its maximum over the reference (train) proteins; a residue is predicted positive
for a concept at threshold t when the normalised activation is strictly greater than t. For every
(unit, concept, threshold) the sweep counts, on the valid and on the test proteins separately:

* predicted residues (precision's denominator), predicted residues inside the concept (its
  numerator, and recall's for single-residue concepts);
* for interval concepts, the instances with at least one predicted residue (recall per instance).

Counts come from the sparse entries alone (an SAE's k codes per residue; a raw unit's non-zero
values): each entry is binned once by threshold, and two sparse products with the residues'
concept and instance memberships count them (scipy's compiled kernels); no loop runs over units
or concepts. Per (unit, concept)
the threshold with the best valid F1 is kept (ties: the lower threshold) and scored on test as it
is; InterPLM re-chose it on test. A concept is covered when some unit has test F1 above the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.sparse import csr_array

THRESHOLDS = (0.0, 0.15, 0.5, 0.6, 0.8)
VALID, TEST = 0, 1
SPLITS = ("valid", "test")


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of the unique (row, col) pairs, rows sorted."""
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    keep = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])] if rows.size else np.zeros(0, bool)
    rows, cols = rows[keep], cols[keep]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols


def _add_sparse(dense: np.ndarray, product) -> None:
    """dense += a sparse product, ``dense`` flat and row-major over the product's shape (CSR), or
    over its transpose's (CSC: then the compressed axis is the row). A product of two compressed
    matrices holds each entry once (scipy's csr_matmat), so no duplicates are summed."""
    rows = np.repeat(np.arange(len(product.indptr) - 1, dtype=np.int64), np.diff(product.indptr))
    width = product.shape[1] if product.format == "csr" else product.shape[0]
    dense[rows * width + product.indices] += product.data.astype(dense.dtype, copy=False)


@dataclass
class ConceptIndex:
    """The evaluated proteins' residues and the concepts on them.

    proteins: protein ids, in index order; offsets: (n_proteins + 1,) first residue of each;
    split: (n_proteins,) int8, VALID or TEST. concepts: one row per evaluated concept (columns
    concept, kind, and per split the positive residues and the instances). The CSR pairs map each
    residue to its concepts (every kind) and to its interval instances; instance_concept and
    instance_split give each instance's concept (a position in ``concepts``) and split.
    """

    proteins: list[str]
    offsets: np.ndarray
    split: np.ndarray
    concepts: pd.DataFrame
    residue_concept: tuple[np.ndarray, np.ndarray]
    residue_instance: tuple[np.ndarray, np.ndarray]
    instance_concept: np.ndarray
    instance_split: np.ndarray

    @property
    def residue_concept_matrix(self) -> csr_array:
        """(residues, concepts) 0/1 CSR."""
        return self._matrix("_concept_matrix", self.residue_concept, len(self.concepts))

    @property
    def residue_instance_matrix(self) -> csr_array:
        """(residues, instances) 0/1 CSR."""
        return self._matrix("_instance_matrix", self.residue_instance, len(self.instance_concept))

    def _matrix(self, name, pairs, n_cols):
        if name not in self.__dict__:
            indptr, indices = pairs
            self.__dict__[name] = csr_array((np.ones(len(indices), np.int64), indices, indptr),
                                            shape=(self.n_residues, n_cols))
        return self.__dict__[name]

    @property
    def instance_base(self) -> int:
        """A power of two above the longest instance (see `ConceptSweep._count_instances`)."""
        lengths = np.bincount(self.residue_instance[1], minlength=len(self.instance_concept))
        return 1 << int(max(1, lengths.max(initial=1))).bit_length()

    @property
    def n_residues(self) -> int:
        return int(self.offsets[-1])

    @property
    def residue_split(self) -> np.ndarray:
        return np.repeat(self.split, np.diff(self.offsets))

    @classmethod
    def build(cls, table: pd.DataFrame, lengths: Mapping[str, int], split: Mapping[str, str],
              min_residues: int = 1500, min_instances: int = 25) -> "ConceptIndex":
        """Index the concept ``table`` on the proteins of ``split`` (protein -> "valid" or
        "test"; each needs its length in ``lengths``). A concept is evaluated when, over valid and
        test together, it has at least ``min_residues`` positive residues or ``min_instances``
        instances (a residue concept's instances are its residues), and some positive in each."""
        proteins = sorted(split)
        unknown = [p for p in proteins if p not in lengths]
        if unknown:
            raise ValueError(f"no length for {len(unknown)} protein(s) of the split, e.g. {unknown[0]}")
        bad = sorted(set(split.values()) - set(SPLITS))
        if bad:
            raise ValueError(f"split names {bad}: the concept split has only {'/'.join(SPLITS)}")
        index_of = {p: i for i, p in enumerate(proteins)}
        offsets = np.zeros(len(proteins) + 1, dtype=np.int64)
        np.cumsum([lengths[p] for p in proteins], out=offsets[1:])
        protein_split = np.array([SPLITS.index(split[p]) for p in proteins], dtype=np.int8)

        rows = table[table["protein"].isin(index_of)]
        protein = rows["protein"].map(index_of).to_numpy(np.int64)
        start, end = rows["start"].to_numpy(np.int64), rows["end"].to_numpy(np.int64)
        names, concept = np.unique(rows["concept"].to_numpy(str), return_inverse=True) if len(rows) else ([], np.zeros(0, np.int64))
        interval = rows["kind"].to_numpy(str) == "interval"
        kinds = pd.Series(interval).groupby(concept).agg(["min", "max"]) if len(rows) else None
        if kinds is not None and (kinds["min"] != kinds["max"]).any():
            mixed = names[int(np.flatnonzero((kinds["min"] != kinds["max"]).to_numpy())[0])]
            raise ValueError(f"concept {mixed!r} has both interval and residue rows")

        # Every residue of every row, and the row it came from.
        size = end - start
        row_of = np.repeat(np.arange(len(rows)), size)
        residue = offsets[protein][row_of] + start[row_of] + (np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size))
        pairs = np.unique(residue * max(1, len(names)) + concept[row_of])
        pair_concept, pair_residue = pairs % max(1, len(names)), pairs // max(1, len(names))
        pair_split = protein_split[np.searchsorted(offsets, pair_residue, side="right") - 1]
        positives = np.bincount(pair_concept * 2 + pair_split, minlength=2 * len(names)).reshape(-1, 2)
        instances = positives.copy()  # residue concepts: one instance per residue
        row_split = protein_split[protein]
        is_interval = np.zeros(len(names), dtype=bool)
        is_interval[concept[interval]] = True
        instances[is_interval] = 0
        instances += np.bincount(concept[interval] * 2 + row_split[interval],
                                 minlength=2 * len(names)).reshape(-1, 2)

        total_pos, total_inst = positives.sum(1), instances.sum(1)
        evaluated = (((total_pos >= min_residues) | (total_inst >= min_instances))
                     & (positives > 0).all(1))
        new_id = np.full(len(names), -1, dtype=np.int64)
        new_id[evaluated] = np.arange(int(evaluated.sum()))
        concepts = pd.DataFrame({
            "concept": np.asarray(names, dtype=object)[evaluated] if len(names) else [],
            "kind": np.where(is_interval[evaluated], "interval", "residue"),
            "valid_residues": positives[evaluated, VALID], "test_residues": positives[evaluated, TEST],
            "valid_instances": instances[evaluated, VALID], "test_instances": instances[evaluated, TEST],
        })
        keep = evaluated[pair_concept] if len(names) else np.zeros(0, bool)
        residue_concept = _csr(pair_residue[keep], new_id[pair_concept[keep]], int(offsets[-1]))

        keep_rows = interval & evaluated[concept] if len(names) else np.zeros(0, bool)
        instance_rows = np.flatnonzero(keep_rows)
        instance_of_residue = np.full(len(rows), -1, dtype=np.int64)
        instance_of_residue[instance_rows] = np.arange(len(instance_rows))
        keep_res = keep_rows[row_of]
        residue_instance = _csr(residue[keep_res], instance_of_residue[row_of[keep_res]], int(offsets[-1]))
        return cls(proteins, offsets, protein_split, concepts, residue_concept, residue_instance,
                   new_id[concept[instance_rows]], row_split[instance_rows])


class ConceptSweep:
    """Counts of one set of units over one `ConceptIndex`; feed it with `add`, read it with
    `scores`.

    n_units: how many units; unit_max: (n_units,) each unit's maximum over the reference
    proteins (units whose maximum is 0 predict nothing: they never fired where the scale is set).
    """

    def __init__(self, index: ConceptIndex, unit_max: np.ndarray, thresholds=THRESHOLDS):
        self.index = index
        self.thresholds = np.asarray(sorted(thresholds), dtype=np.float32)
        self.unit_max = np.asarray(unit_max, dtype=np.float32)
        self.n_units = len(self.unit_max)
        n_levels, n_concepts = len(self.thresholds), len(index.concepts)
        self._interval_ids = np.flatnonzero(index.concepts["kind"].to_numpy() == "interval")
        self._interval_pos = np.full(n_concepts, -1, dtype=np.int64)
        self._interval_pos[self._interval_ids] = np.arange(len(self._interval_ids))
        self.predicted = np.zeros(self.n_units * 2 * n_levels, dtype=np.int64)
        # int32: counts of residues and instances (a concept of 2**31 residues is beyond any run).
        self.hits = np.zeros(n_concepts * self.n_units * 2 * n_levels, dtype=np.int32)
        # found is laid out (interval concept, split, unit, level): row concept * 2 + split of the
        # product of _instance_rows (that row's instances) with each batch's highest levels.
        self.found = np.zeros(len(self._interval_ids) * 2 * self.n_units * n_levels, dtype=np.int32)
        n_instances = len(index.instance_concept)
        self._instance_rows = csr_array(
            (np.ones(n_instances, np.int64),
             (self._interval_pos[index.instance_concept] * 2 + index.instance_split, np.arange(n_instances))),
            shape=(2 * len(self._interval_ids), n_instances))
        self._seen = np.zeros(len(index.proteins), dtype=bool)
        if index.instance_base ** n_levels >= 1 << 62:
            raise ValueError(f"an instance of {index.instance_base // 2} or more residues: the instance "
                             f"count supports at most {(1 << (62 // n_levels)) - 1} residues at {n_levels} thresholds")
        self._residue_split = index.residue_split

    def add(self, residue: np.ndarray, idx: np.ndarray, val: np.ndarray) -> None:
        """Count one batch: ``residue`` (n,) global residue indices (`ConceptIndex.offsets`),
        ``idx`` (n, k) unit indices (distinct within a row) and ``val`` (n, k) their raw
        activations (entries <= 0 are inactive). Every residue of a protein must come in the same
        batch (instance recall takes the maximum over an instance's residues); a protein seen in
        an earlier batch is an error."""
        residue = np.asarray(residue, dtype=np.int64)
        proteins = np.unique(np.searchsorted(self.index.offsets, residue, side="right") - 1)
        if self._seen[proteins].any():
            raise ValueError("a protein's residues came in two batches; pass each protein whole")
        self._seen[proteins] = True
        n, k = idx.shape
        n_levels = len(self.thresholds)
        unit = idx.reshape(-1).astype(np.int64)
        scale = self.unit_max[unit]
        with np.errstate(divide="ignore", invalid="ignore"):
            normalised = np.where(scale > 0, val.reshape(-1) / scale, 0)
        level = np.searchsorted(self.thresholds, normalised, side="left").astype(np.int64) - 1
        active = level >= 0
        unit, level = unit[active], level[active]
        per_row = active.reshape(n, k).sum(1)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(per_row, out=indptr[1:])
        split = np.repeat(self._residue_split[residue].astype(np.int64), per_row)
        cell = (unit * 2 + split) * n_levels + level  # (unit, split, level) of each entry
        self.predicted += np.bincount(cell, minlength=self.predicted.size)

        # hits[concept, cell] = sum over residues of [residue in concept] x [residue has that entry],
        # a sparse product in C rather than an expansion of every (entry, concept) pair.
        # Written entries.T @ membership: the product's CSC arrays are then the (concept, cell)
        # CSR of the counts, and scipy converts only the small membership matrix.
        entries = csr_array((np.ones(len(cell), np.int64), cell, indptr), shape=(n, self.predicted.size))
        _add_sparse(self.hits, entries.T @ self.index.residue_concept_matrix[residue])

        if self.found.size:
            self._count_instances(residue, unit, level, indptr)

    def _count_instances(self, residue: np.ndarray, unit: np.ndarray, level: np.ndarray,
                         indptr: np.ndarray) -> None:
        """Each (instance, unit)'s highest level over the instance's residues, counted once: the
        sparse product of instance membership with entries valued base**level sums to a number
        whose base-``base`` leading digit is the highest level (no level's count reaches base);
        a second product counts those (instance, unit, highest level) per concept and split."""
        n_levels = len(self.thresholds)
        powers = self.index.instance_base ** np.arange(n_levels, dtype=np.int64)
        entries = csr_array((powers[level], unit, indptr), shape=(len(residue), self.n_units))
        sums = entries.T @ self.index.residue_instance_matrix[residue]  # CSC: per instance, its units
        top = np.searchsorted(powers, sums.data, side="right") - 1
        highest = csr_array((np.ones(len(top), np.int64), sums.indices * n_levels + top, sums.indptr),
                            shape=(sums.shape[1], self.n_units * n_levels))
        _add_sparse(self.found, self._instance_rows @ highest)

    @property
    def seen(self) -> np.ndarray:
        """(n_proteins,) bool: which proteins of the index have been added."""
        return self._seen

    def counts(self) -> dict[str, np.ndarray]:
        """Cumulative counts per threshold (index j: activation above thresholds[j]):
        predicted (units, 2, T), hits (concepts, units, 2, T), found (interval concepts, units, 2, T)."""
        n_levels = len(self.thresholds)

        def at_or_above(counts, shape):
            return counts.reshape(shape)[..., ::-1].cumsum(-1)[..., ::-1]

        return {
            "predicted": at_or_above(self.predicted, (self.n_units, 2, n_levels)),
            "hits": at_or_above(self.hits, (len(self.index.concepts), self.n_units, 2, n_levels)),
            "found": at_or_above(self.found, (len(self._interval_ids), 2, self.n_units, n_levels)).transpose(0, 2, 1, 3),
        }

    def scores(self, chunk: int = 64) -> "SweepScores":
        """Per (concept, unit): the threshold chosen on valid, and F1, precision and recall on
        valid and test at that threshold."""
        counts = self.counts()
        concepts = self.index.concepts
        n_concepts = len(concepts)
        shape = (n_concepts, self.n_units)
        out = {name: np.zeros(shape, np.float32) for name in
               ("valid_f1", "test_f1", "test_precision", "test_recall", "valid_precision", "valid_recall")}
        level = np.zeros(shape, np.int8)
        predicted = counts["predicted"].astype(np.float64)[None]  # (1, U, 2, T)
        for first in range(0, n_concepts, chunk):
            rows = np.arange(first, min(n_concepts, first + chunk))
            hits = counts["hits"][rows].astype(np.float64)
            recall_num = hits.copy()
            is_interval = concepts["kind"].to_numpy()[rows] == "interval"
            if is_interval.any():
                recall_num[is_interval] = counts["found"][self._interval_pos[rows[is_interval]]]
            denominators = np.where(is_interval[:, None],
                                    concepts[["valid_instances", "test_instances"]].to_numpy()[rows],
                                    concepts[["valid_residues", "test_residues"]].to_numpy()[rows])
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = np.where(predicted > 0, hits / predicted, 0.0)
                recall = recall_num / denominators[:, None, :, None]
                f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
            best = np.argmax(f1[:, :, VALID, :], axis=-1)  # first maximum: the lower threshold
            take = lambda a, s: np.take_along_axis(a[:, :, s, :], best[..., None], -1)[..., 0]  # noqa: E731
            level[rows] = best
            out["valid_f1"][rows], out["test_f1"][rows] = take(f1, VALID), take(f1, TEST)
            out["valid_precision"][rows], out["test_precision"][rows] = take(precision, VALID), take(precision, TEST)
            out["valid_recall"][rows], out["test_recall"][rows] = take(recall, VALID), take(recall, TEST)
        return SweepScores(concepts=concepts, thresholds=self.thresholds, level=level, **out)


@dataclass
class SweepScores:
    """(concepts, units) arrays at each pair's valid-chosen threshold (``thresholds[level]``)."""

    concepts: pd.DataFrame
    thresholds: np.ndarray
    level: np.ndarray
    valid_f1: np.ndarray
    test_f1: np.ndarray
    valid_precision: np.ndarray
    valid_recall: np.ndarray
    test_precision: np.ndarray
    test_recall: np.ndarray

    def best_pairs(self, unit_names=None, f1_cutoff: float = 0.5) -> pd.DataFrame:
        """One row per concept: its best unit by valid F1 (ties: the lower unit index) with that
        pair's threshold and valid/test scores; the best test F1 of any unit (what coverage
        counts, as METHODS.md defines it); how many units pass the cutoff on test; covered."""
        rows = np.arange(len(self.concepts))
        unit = np.argmax(self.valid_f1, axis=1) if self.valid_f1.size else np.zeros(0, np.int64)
        table = self.concepts.copy()
        table["unit"] = unit if unit_names is None else np.asarray(unit_names)[unit]
        table["threshold"] = self.thresholds[self.level[rows, unit]] if len(rows) else []
        for name in ("valid_f1", "test_f1", "test_precision", "test_recall"):
            table[name] = getattr(self, name)[rows, unit] if len(rows) else []
        table["max_test_f1"] = self.test_f1.max(axis=1) if self.test_f1.size else []
        table["n_units_above_cutoff"] = (self.test_f1 > f1_cutoff).sum(axis=1) if self.test_f1.size else []
        table["covered"] = table["max_test_f1"] > f1_cutoff
        table["covered_by_valid_choice"] = table["test_f1"] > f1_cutoff
        return table
