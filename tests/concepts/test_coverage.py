"""The concept split, the readers of unit activations (code shards; raw dimensions, each sign a
unit) and the coverage counts, on hand-built inputs."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protsae.codes.encode import _code_batch
from protsae.codes.storage import code_schema
from protsae.concepts.coverage import (
    ConceptDataset,
    code_batches,
    concept_split,
    coverage_summary,
    coverage_tables,
    dataset_pairs,
    raw_units,
    read_dataset_pairs,
    sweep_codes,
    write_dataset_pairs,
)
from protsae.concepts.sweep import ConceptIndex, ConceptSweep
from protsae.concepts.table import concept_frame


def write_codes(path, rows_by_protein, k, n_latents, rng):
    seq_ids, pos, idx, val = [], [], [], []
    for protein, length in rows_by_protein:
        for p in range(length):
            seq_ids.append(protein)
            pos.append(p)
            idx.append(rng.choice(n_latents, k, replace=False))
            val.append(np.sort(rng.random(k))[::-1] * (rng.random(k) > 0.3))
    schema = code_schema(k, {"n_latents": n_latents, "k": k})
    batch = _code_batch(schema, pa.array(seq_ids, pa.string()), np.asarray(pos, np.int32),
                        np.asarray(idx, np.int32), np.asarray(val, np.float32))
    pq.write_table(pa.Table.from_batches([batch]), path, row_group_size=7)
    return np.asarray(idx), np.asarray(val, np.float32)


def test_concept_split_follows_the_dataset_split():
    split = {f"P{i}": ("train" if i < 10 else "test") for i in range(20)} | {"X": "test"}
    proteins = [f"P{i}" for i in range(20)]  # X is not in the dataset's sample
    labels = concept_split(split, proteins, max_reference=None, max_proteins=None, valid_fraction=0.5, seed=0)
    assert set(labels.index) == set(proteins)
    assert set(labels[labels == "reference"].index) == {f"P{i}" for i in range(10)}
    assert (labels == "valid").sum() == 5 and (labels == "test").sum() == 5
    again = concept_split(split, proteins[::-1], max_reference=None, max_proteins=None, valid_fraction=0.5, seed=0)
    assert labels.equals(again)  # input order does not matter
    capped = concept_split(split, proteins, max_reference=4, max_proteins=6, valid_fraction=0.5, seed=0)
    assert capped.value_counts().to_dict() == {"reference": 4, "valid": 3, "test": 3}
    # A probe task's own valid split is kept.
    task = {"a": "train", "b": "valid", "c": "test", "d": "test"}
    assert concept_split(task, list(task), max_reference=None, max_proteins=None, valid_fraction=0.5,
                         seed=0).to_dict() == {"a": "reference", "b": "valid", "c": "test", "d": "test"}


def test_code_batches_keep_each_protein_whole(tmp_path):
    rng = np.random.default_rng(0)
    layout = [("A", 5), ("B", 9), ("C", 3), ("D", 12)]
    path = tmp_path / "codes.parquet"
    write_codes(path, layout, 3, 16, rng)
    wanted = {"A": 0, "C": 1, "D": 2}
    seen = {}
    for protein, pos, idx, val in code_batches([path], wanted, batch_rows=4):
        for p in np.unique(protein):
            assert p not in seen, "a protein split over two batches"
            seen[p] = np.sort(pos[protein == p]).tolist()
    assert seen == {0: list(range(5)), 1: list(range(3)), 2: list(range(12))}


def test_raw_units_are_each_sign_of_each_dimension():
    idx, val = raw_units(np.array([[1.5, -2.0, 0.0]], np.float32))
    assert idx.tolist() == [[0, 3, 4]] and val.tolist() == [[1.5, 2.0, 0.0]]


def test_sweep_from_code_shards_equals_the_sweep_of_the_same_rows(tmp_path):
    rng = np.random.default_rng(1)
    layout = [(f"P{i:02d}", int(rng.integers(4, 15))) for i in range(12)]  # index order = file order
    path = tmp_path / "codes.parquet"
    idx, val = write_codes(path, layout, 4, 10, rng)
    lengths = dict(layout)
    split = pd.DataFrame({"protein": [p for p, _ in layout],
                          "split": ["reference"] * 4 + ["valid"] * 4 + ["test"] * 4,
                          "length": [n for _, n in layout]})
    table = concept_frame([(p, "c", 0, min(3, n), "interval") for p, n in layout]
                          + [(p, "s", 1, 2, "residue") for p, n in layout])
    dataset = ConceptDataset("d", table, split)
    sweep = sweep_codes(dataset, [path], 10, min_residues=1, min_instances=1)
    # By hand: the reference rows set the maxima, the valid and test rows are added in index order.
    starts = np.cumsum([0] + [n for _, n in layout])
    reference_rows = np.arange(starts[0], starts[4])
    unit_max = np.zeros(10, np.float32)
    np.maximum.at(unit_max, idx[reference_rows].ravel(), val[reference_rows].ravel())
    index = ConceptIndex.build(table, lengths, dict(zip(split["protein"][4:], split["split"][4:])),
                               min_residues=1, min_instances=1)
    direct = ConceptSweep(index, unit_max)
    scored = np.arange(starts[4], starts[-1])
    direct.add(scored - starts[4], idx[scored], val[scored])
    assert np.array_equal(sweep.unit_max, unit_max)
    assert np.array_equal(sweep.hits, direct.hits) and np.array_equal(sweep.found, direct.found)
    assert sweep.hits.sum() > 0


def test_coverage_counts_keep_amino_acids_apart():
    index = ConceptIndex.build(concept_frame([("A", "Pfam:PF1 x", 0, 2, "interval"), ("B", "Pfam:PF1 x", 0, 2, "interval"),
                                              ("A", "AA:M", 2, 3, "residue"), ("B", "AA:M", 2, 3, "residue")]),
                               {"A": 3, "B": 3}, {"A": "valid", "B": "test"}, min_residues=1, min_instances=1)
    sweep = ConceptSweep(index, np.ones(2, np.float32))
    # Unit 0 fires on the Pfam domain of both proteins; unit 1 on nothing.
    sweep.add(np.arange(6), np.array([[0, 1]] * 6), np.array([[1, 0], [1, 0], [0, 0]] * 2, np.float32))
    pairs, summary = coverage_tables({"d": sweep.scores()})
    assert summary["concepts_evaluated"] == 1 and summary["covered"] == 1
    assert summary["amino_acids"] == {"concepts_evaluated": 1, "covered": 0, "coverage": 0.0,
                                      "covered_by_valid_choice": 0}
    assert summary["by_source"]["Pfam"]["covered"] == 1
    assert pairs.set_index("concept").loc["Pfam:PF1 x", "test_f1"] == pytest.approx(1.0)


def test_per_dataset_pairs_merge_to_the_one_pass_tables(tmp_path):
    """The workflow sweeps one dataset per job and merges the Parquet pairs: the merged table and
    counts are those of all datasets at once, to the bit, a dataset with no concept evaluated and
    its amino acids included."""
    rng = np.random.default_rng(5)
    frame = concept_frame([(p, c, start, start + 3, "interval") for p in "ABCDEF" for c, start in
                           (("Pfam:PF1 x", 0), ("Swiss-Prot:Helix", 4))]
                          + [(p, "AA:M", 0, 1, "residue") for p in "ABCDEF"])
    lengths = {p: 10 for p in "ABCDEF"}
    split = {"A": "valid", "B": "valid", "C": "valid", "D": "test", "E": "test", "F": "test"}
    scores = {}
    for name, min_residues in (("full", 1), ("none_evaluated", 10_000)):
        index = ConceptIndex.build(frame, lengths, split, min_residues=min_residues, min_instances=10_000)
        sweep = ConceptSweep(index, np.ones(5, np.float32))
        sweep.add(np.arange(60), rng.integers(0, 5, (60, 2)), rng.random((60, 2)).astype(np.float32))
        scores[name] = sweep.scores()
    pairs, summary = coverage_tables(scores, f1_cutoff=0.3)
    assert summary["by_dataset"]["none_evaluated"]["concepts_evaluated"] == 0
    assert summary["concepts_evaluated"] == 2 and summary["amino_acids"]["concepts_evaluated"] == 1
    read_back = {}
    for name, sweep_scores in scores.items():
        write_dataset_pairs(dataset_pairs(name, sweep_scores, f1_cutoff=0.3), tmp_path / f"{name}.parquet")
        read_back[name] = read_dataset_pairs(tmp_path / f"{name}.parquet")
    merged, merged_summary = coverage_summary(read_back, f1_cutoff=0.3)
    pd.testing.assert_frame_equal(merged, pairs, check_exact=True)
    assert merged_summary == summary
    assert merged.to_csv(sep="\t", index=False) == pairs.to_csv(sep="\t", index=False)


def test_a_split_protein_missing_from_the_codes_is_an_error(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "codes.parquet"
    write_codes(path, [("A", 4), ("B", 4), ("C", 4)], 2, 6, rng)
    table = concept_frame([(p, "c", 0, 2, "interval") for p in "ABCD"])
    split = pd.DataFrame({"protein": list("ABCD"), "split": ["reference", "valid", "test", "test"], "length": 4})
    with pytest.raises(ValueError, match=r"1 valid or test protein\(s\) of the concept split have no rows .* e.g. D"):
        sweep_codes(ConceptDataset("d", table, split), [path], 6, min_residues=1, min_instances=1)
    longer = split.assign(length=[4, 3, 4, 4]).iloc[:3]
    with pytest.raises(ValueError, match="protein B has a code row at position 3, beyond its 3 residues"):
        sweep_codes(ConceptDataset("d", table, longer), [path], 6, min_residues=1, min_instances=1)
