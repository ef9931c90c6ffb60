"""What the browser shows of a latent, on hand-built codes where the answer is known."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protsae.browser.examples import (
    EXAMPLE_SCHEMA,
    HISTOGRAM_BINS,
    STRUCTURE_GROUP,
    bin_of,
    choose_examples,
    choose_structures,
    latent_overview,
    read_table,
    spread_ranks,
    with_tracks,
    write_table,
)
from protsae.codes.encode import _code_batch
from protsae.codes.maxima import MaxActivations, max_activation_per_protein
from protsae.codes.storage import code_schema


def write_codes(path, rows, k=2, n_latents=4):
    """A code shard from rows (seq_id, pos, [(latent, value), ...]), unused slots (3, 0.0)."""
    idx = np.full((len(rows), k), 3, np.int32)
    val = np.zeros((len(rows), k), np.float32)
    for r, (_, _, slots) in enumerate(rows):
        for s, (latent, value) in enumerate(sorted(slots, key=lambda lv: -lv[1])):
            idx[r, s], val[r, s] = latent, value
    batch = _code_batch(code_schema(k, {"n_latents": n_latents, "k": k}), pa.array([r[0] for r in rows], pa.string()),
                        np.array([r[1] for r in rows], np.int32), idx, val)
    pq.write_table(pa.Table.from_batches([batch]), path)
    return path


def maxima_of(values: dict[str, float], latent=0, n_latents=2) -> MaxActivations:
    ids = list(values)
    return MaxActivations(ids, np.arange(len(ids)), np.full(len(ids), latent, np.int32),
                          np.array([values[i] for i in ids], np.float32), n_latents)


def test_bins_are_interprots_quarters_of_the_latent_max():
    norm = np.array([1.0, 0.76, 0.75, 0.51, 0.5, 0.26, 0.25, 0.01])
    assert bin_of(norm).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_spread_ranks_take_the_ends_and_even_steps():
    assert np.flatnonzero(spread_ranks(np.full(10, 10), np.arange(10), 4)).tolist() == [0, 3, 6, 9]
    assert np.flatnonzero(spread_ranks(np.full(3, 3), np.arange(3), 4)).tolist() == [0, 1, 2]
    for count in range(5, 60):
        chosen = np.flatnonzero(spread_ranks(np.full(count, count), np.arange(count), 5))
        assert len(chosen) == 5 and chosen[0] == 0 and chosen[-1] == count - 1


def test_examples_top_bin_is_the_strongest_lower_bins_spread_ties_by_id():
    # Latent max 1.0; top bin (0.75, 1]: five proteins, the strongest 2 shown (tie at 0.9 -> id order).
    values = {"P1": 1.0, "P2": 0.9, "P0": 0.9, "P3": 0.8, "P4": 0.76,
              "Q1": 0.7, "Q2": 0.65, "Q3": 0.6, "Q4": 0.55, "Q5": 0.51,  # (0.5, 0.75]
              "R1": 0.3,  # (0.25, 0.5]
              }
    table = choose_examples(maxima_of(values), n_per_bin=2)
    by_bin = {g: list(part["protein"]) for g, part in table.groupby("group")}
    assert by_bin == {0: ["P1", "P0"], 1: ["Q1", "Q5"], 2: ["R1"]}
    assert table["norm"].max() == pytest.approx(1.0)


def test_structures_are_the_strongest_proteins_that_have_one():
    values = {"A": 1.0, "B": 0.8, "C": 0.6, "D": 0.4}
    table = choose_structures(maxima_of(values), 2, with_structure={"B", "D", "Z"})
    assert table["protein"].tolist() == ["B", "D"] and set(table["group"]) == {STRUCTURE_GROUP}
    assert table["norm"].tolist() == pytest.approx([0.8, 0.4])  # of the max over every protein


def test_overview_counts_density_and_histogram():
    maxima = MaxActivations(["A", "B", "C"], np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1], np.int32),
                            np.array([1.0, 0.5, 0.04, 2.0], np.float32), 3)
    overview = latent_overview(maxima, n_proteins=10)
    assert overview["n_proteins"].tolist() == [3, 1, 0]
    assert overview["density"].tolist() == pytest.approx([0.3, 0.1, 0.0])
    hist = np.stack(overview["histogram"])
    assert hist.shape == (3, HISTOGRAM_BINS)
    assert hist[0, HISTOGRAM_BINS - 1] == 1 and hist[0, 9] == 1 and hist[0, 0] == 1  # 1.0, 0.5, 0.04
    assert hist[1, HISTOGRAM_BINS - 1] == 1 and hist[2].sum() == 0


def test_tracks_come_from_the_codes_and_round_trip(tmp_path):
    shard = write_codes(tmp_path / "codes.parquet", [
        ("A", 0, [(0, 0.2)]), ("A", 1, [(0, 1.0), (1, 0.3)]), ("A", 2, []), ("A", 3, [(0, 0.5)]),
        ("B", 0, [(1, 0.9)]), ("B", 1, [(0, 0.6)]),
    ])
    maxima = max_activation_per_protein([shard], n_latents=4)
    chosen = choose_examples(maxima, n_per_bin=3)
    examples = with_tracks(chosen, [shard], {"A": 4, "B": 2})
    a0 = examples[(examples["protein"] == "A") & (examples["latent"] == 0)].iloc[0]
    assert a0["positions"].tolist() == [0, 1, 3] and a0["values"].tolist() == pytest.approx([0.2, 1.0, 0.5])
    assert a0["length"] == 4 and a0["group"] == 0
    b0 = examples[(examples["protein"] == "B") & (examples["latent"] == 0)].iloc[0]
    assert b0["group"] == 1 and b0["positions"].tolist() == [1]  # 0.6 of latent 0's max 1.0
    write_table(examples, EXAMPLE_SCHEMA, tmp_path / "examples.parquet")
    back = read_table(tmp_path / "examples.parquet")
    assert back["protein"].tolist() == examples["protein"].tolist()
    assert [p.tolist() for p in back["positions"]] == [p.tolist() for p in examples["positions"]]


def test_tracks_from_other_codes_than_the_maxima_are_refused(tmp_path):
    shard = write_codes(tmp_path / "codes.parquet", [("A", 0, [(1, 0.5)])])
    chosen = choose_examples(maxima_of({"A": 1.0}), n_per_bin=1)  # says latent 0 fires on A
    with pytest.raises(ValueError, match="latent 0 has no active residue in A"):
        with_tracks(chosen, [shard], {"A": 1})
