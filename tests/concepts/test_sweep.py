"""The concept sweep on inputs whose answers are known, and against a plain per-unit loop."""

import numpy as np
import pandas as pd
import pytest

from protsae.concepts.sweep import THRESHOLDS, ConceptIndex, ConceptSweep
from protsae.concepts.table import concept_frame


def dense_to_codes(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, units) activations -> the k largest per row (idx, val), as an SAE's codes."""
    idx = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int32), np.take_along_axis(dense, idx, 1).astype(np.float32)


def run_sweep(table, lengths, split, dense, k=None, batches=None, reference_max=None, **build):
    index = ConceptIndex.build(table, lengths, split, **build)
    unit_max = dense.max(axis=0) if reference_max is None else reference_max
    sweep = ConceptSweep(index, unit_max)
    idx, val = dense_to_codes(dense, k or dense.shape[1])
    proteins = batches or [index.proteins]
    for group in proteins:
        rows = np.concatenate([np.arange(index.offsets[index.proteins.index(p)], index.offsets[index.proteins.index(p) + 1])
                               for p in group])
        sweep.add(rows, idx[rows], val[rows])
    return index, sweep


def loop_scores(index, dense, unit_max, table):
    """Per unit, concept and threshold, straight from the definitions; the valid-chosen threshold's
    (valid F1, test F1)."""
    n_res = index.n_residues
    residue_split = index.residue_split
    out = {}
    for c, row in index.concepts.iterrows():
        rows = table[(table["concept"] == row["concept"]) & table["protein"].isin(index.proteins)]
        member = np.zeros(n_res, bool)
        instances = []
        for r in rows.itertuples():
            base = index.offsets[index.proteins.index(r.protein)]
            member[base + r.start: base + r.end] = True
            instances.append(np.arange(base + r.start, base + r.end))
        for unit in range(dense.shape[1]):
            if unit_max[unit] <= 0:
                f1s = np.zeros((len(THRESHOLDS), 2))
            else:
                a = dense[:, unit] / unit_max[unit]
                f1s = np.zeros((len(THRESHOLDS), 2))
                for j, t in enumerate(THRESHOLDS):
                    pred = a > t
                    for s in (0, 1):
                        in_split = residue_split == s
                        tp = (pred & member & in_split).sum()
                        n_pred = (pred & in_split).sum()
                        precision = tp / n_pred if n_pred else 0.0
                        if row["kind"] == "interval":
                            mine = [i for i in instances if residue_split[i[0]] == s]
                            recall = np.mean([pred[i].any() for i in mine])
                        else:
                            recall = tp / (member & in_split).sum()
                        f1s[j, s] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            best = int(np.argmax(f1s[:, 0]))
            out[c, unit] = (f1s[best, 0], f1s[best, 1])
    return out


@pytest.fixture
def planted():
    """Four proteins of 10 residues; concept "dom" at residues 2..5 of every protein (interval),
    concept "site" at residue 7 (residue kind). Unit 0 equals "dom", unit 1 fires weakly on one
    residue of each "dom" instance, unit 2 is noise."""
    lengths = {f"P{i}": 10 for i in range(4)}
    split = {"P0": "valid", "P1": "valid", "P2": "test", "P3": "test"}
    rows = [(p, "dom", 2, 6, "interval") for p in lengths] + [(p, "site", 7, 8, "residue") for p in lengths]
    table = concept_frame(rows)
    dense = np.zeros((40, 3), np.float32)
    rng = np.random.default_rng(0)
    for i in range(4):
        dense[i * 10 + 2: i * 10 + 6, 0] = 1.0 + 0.01 * i
        dense[i * 10 + 3, 1] = 0.3
    dense[:, 2] = rng.random(40) * 0.5
    return table, lengths, split, dense


def test_planted_latent_equal_to_a_concept_gets_f1_one_at_the_lowest_threshold(planted):
    table, lengths, split, dense = planted
    index, sweep = run_sweep(table, lengths, split, dense, min_residues=1, min_instances=1)
    scores = sweep.scores()
    dom = index.concepts.index[index.concepts["concept"] == "dom"][0]
    assert scores.valid_f1[dom, 0] == pytest.approx(1.0)
    assert scores.test_f1[dom, 0] == pytest.approx(1.0)
    assert scores.thresholds[scores.level[dom, 0]] == 0.0
    pairs = scores.best_pairs()
    assert pairs.set_index("concept").loc["dom", "unit"] == 0
    assert bool(pairs.set_index("concept").loc["dom", "covered"])


def test_one_residue_per_instance_gives_full_domain_recall(planted):
    table, lengths, split, dense = planted
    index, sweep = run_sweep(table, lengths, split, dense, min_residues=1, min_instances=1)
    scores = sweep.scores()
    dom = index.concepts.index[index.concepts["concept"] == "dom"][0]
    assert scores.test_recall[dom, 1] == pytest.approx(1.0)
    assert scores.test_precision[dom, 1] == pytest.approx(1.0)
    # Per residue it would be a quarter: the recall is per instance.
    assert sweep.counts()["hits"][dom, 1, 1, 0] == 2


def test_threshold_is_chosen_on_valid_and_not_on_test():
    """Unit 0 separates the concept on valid only above 0.5; on test it would be best at 0. The
    pair is scored on test at valid's threshold."""
    lengths = {"A": 4, "B": 4}
    split = {"A": "valid", "B": "test"}  # index order: A's residues first
    table = concept_frame([("A", "c", 0, 2, "residue"), ("B", "c", 0, 2, "residue")])
    dense = np.array([[1.0], [0.9], [0.3], [0.2],    # valid: concept residues high
                      [0.3], [0.2], [0.0], [0.0]], np.float32)  # test: concept residues low
    index, sweep = run_sweep(table, lengths, split, dense, min_residues=1, min_instances=1)
    scores = sweep.scores()
    assert scores.thresholds[scores.level[0, 0]] == 0.5
    assert scores.valid_f1[0, 0] == pytest.approx(1.0)
    assert scores.test_f1[0, 0] == 0.0  # nothing above 0.5 on test; re-choosing would give 1


def test_vectorised_sweep_equals_a_per_unit_loop():
    rng = np.random.default_rng(3)
    lengths = {f"P{i}": int(rng.integers(15, 40)) for i in range(12)}
    split = {p: ("valid" if i % 2 else "test") for i, p in enumerate(lengths)}
    rows = []
    for p, n in lengths.items():
        for c in range(4):
            for _ in range(int(rng.integers(0, 3))):
                start = int(rng.integers(0, n - 3))
                rows.append((p, f"int{c}", start, start + int(rng.integers(1, 4)), "interval"))
        rows += [(p, "res", int(s), int(s) + 1, "residue") for s in rng.choice(n, 3, replace=False)]
    table = concept_frame(rows)
    n_res = sum(lengths.values())
    dense = np.where(rng.random((n_res, 9)) < 0.4, rng.random((n_res, 9)), 0).astype(np.float32)
    index, sweep = run_sweep(table, lengths, split, dense, min_residues=1, min_instances=1,
                             batches=[list(sorted(lengths))[:5], list(sorted(lengths))[5:]])
    scores = sweep.scores()
    expected = loop_scores(index, dense, dense.max(0), table)
    assert len(expected) == len(index.concepts) * 9 and len(index.concepts) == 5
    assert 0 < sum(test for _, test in expected.values())
    for (c, unit), (valid, test) in expected.items():
        assert scores.valid_f1[c, unit] == pytest.approx(valid, abs=1e-6), (c, unit)
        assert scores.test_f1[c, unit] == pytest.approx(test, abs=1e-6), (c, unit)


def test_minimum_counts_decide_which_concepts_are_evaluated(planted):
    table, lengths, split, _ = planted
    index = ConceptIndex.build(table, lengths, split, min_residues=10, min_instances=100)
    assert list(index.concepts["concept"]) == ["dom"]  # 16 residues; "site" has 4
    index = ConceptIndex.build(table, lengths, split, min_residues=100, min_instances=4)
    assert sorted(index.concepts["concept"]) == ["dom", "site"]
    only_valid = concept_frame([("P0", "x", 0, 5, "interval")])
    assert ConceptIndex.build(only_valid, lengths, split, min_residues=1, min_instances=1).concepts.empty


def test_a_protein_split_over_two_batches_is_refused(planted):
    table, lengths, split, dense = planted
    index = ConceptIndex.build(table, lengths, split, min_residues=1, min_instances=1)
    sweep = ConceptSweep(index, dense.max(0))
    idx, val = dense_to_codes(dense, 3)
    sweep.add(np.arange(5), idx[:5], val[:5])
    with pytest.raises(ValueError, match="two batches"):
        sweep.add(np.arange(5, 10), idx[5:10], val[5:10])


def test_mixed_kinds_and_unknown_split_names_are_errors(planted):
    table, lengths, split, _ = planted
    mixed = pd.concat([table, concept_frame([("P0", "dom", 8, 9, "residue")])])
    with pytest.raises(ValueError, match="both interval and residue"):
        ConceptIndex.build(mixed, lengths, split)
    with pytest.raises(ValueError, match="split names"):
        ConceptIndex.build(table, lengths, split | {"P0": "train"})
