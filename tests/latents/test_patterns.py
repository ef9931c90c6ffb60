"""Activation patterns (METHODS.md section 6): contig statistics, every rule and boundary of
Table 2 on hand-built tracks, top-sequence selection, track collection from code shards, and the
whole table on a shard with planted latents."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protsae.codes.encode import _code_batch
from protsae.codes.maxima import MaxActivations, max_activation_per_protein
from protsae.codes.storage import code_schema
from protsae.latents.patterns import (
    PATTERNS,
    Track,
    Tracks,
    activation_patterns,
    batch_track_stats,
    classify,
    collect_tracks,
    summarise_patterns,
    top_sequences,
    track_stats,
)


def track(length, contigs, peak=0):
    """Dense track of ``length`` residues with contigs given as (start, contig_length), value 1,
    except the first residue of contig ``peak``, which holds the maximum (2)."""
    values = np.zeros(length, np.float32)
    for start, size in contigs:
        values[start:start + size] = 1.0
    values[contigs[peak][0]] = 2.0
    return values


def spaced(distances, contig_length, length=None):
    """A track whose successive contig starts are ``distances`` apart (first contig at 0);
    the sequence is three times the span, so that coverage stays low."""
    starts = np.r_[0, np.cumsum(distances)]
    length = length or 3 * int(starts[-1] + contig_length)
    return track(length, [(int(s), contig_length) for s in starts])


def single_contig(contig_length, length, n=5):
    return [track(length, [(0, contig_length)]) for _ in range(n)]


# --- contig statistics -------------------------------------------------------------------------

def test_track_stats_contigs_top_contig_and_coverage():
    values = np.array([0, 1, 2, 0, 0, 1, 0, 3, 3, 0], np.float32)
    stats = track_stats(values)
    assert stats.n_contigs == 3
    assert stats.contig_starts.tolist() == [1, 5, 7]
    assert stats.top_contig_length == 2  # the maximum 3 is first reached at 7, in contig [7, 8]
    assert stats.n_active == 5
    assert stats.coverage == 0.5


def test_top_contig_is_the_first_position_of_a_tied_maximum():
    values = np.array([1, 2, 1, 0, 2, 0], np.float32)  # max 2 at 1 (contig of 3) and at 4 (contig of 1)
    assert track_stats(values).top_contig_length == 3
    assert track_stats(values[::-1].copy()).top_contig_length == 1


def test_track_without_active_residues():
    stats = track_stats(np.zeros(7, np.float32))
    assert (stats.n_contigs, stats.top_contig_length, stats.n_active, stats.coverage) == (0, 0, 0, 0.0)
    assert stats.contig_starts.size == 0


def reference_stats(values):
    """Plain-Python contig statistics of one dense track."""
    contigs, start = [], None
    for i, v in enumerate(list(values) + [0]):
        if v > 0 and start is None:
            start = i
        elif v <= 0 and start is not None:
            contigs.append((start, i - start))
            start = None
    active = [i for i, v in enumerate(values) if v > 0]
    top = 0
    if active:
        argmax = max(active, key=lambda i: (values[i], -i))
        top = next(size for s, size in contigs if s <= argmax < s + size)
    return len(contigs), [s for s, _ in contigs], top, len(active) / len(values)


def test_batched_stats_match_a_per_track_reference():
    rng = np.random.default_rng(0)
    dense = []
    for _ in range(200):
        length = int(rng.integers(1, 40))
        values = rng.integers(0, 4, length).astype(np.float32) * (rng.random(length) < rng.random())
        dense.append(values)
    # Track 0 ends at residue 4 and track 1 starts at residue 5: they must not merge.
    dense[0], dense[1] = np.r_[np.zeros(3), 1, 1].astype(np.float32), np.r_[np.zeros(5), 1].astype(np.float32)
    stats = batch_track_stats(Tracks.from_tracks(dense))
    for i, values in enumerate(dense):
        n_contigs, starts, top, coverage = reference_stats(values)
        assert stats[i].n_contigs == n_contigs
        assert stats[i].contig_starts.tolist() == starts
        assert stats[i].top_contig_length == top
        assert stats[i].coverage == pytest.approx(coverage)


def test_sparse_track_round_trip_and_validation():
    values = np.array([0, 0.5, 0, 2], np.float32)
    sparse = Track.from_dense(values)
    assert sparse.positions.tolist() == [1, 3] and sparse.length == 4
    np.testing.assert_array_equal(sparse.to_dense(), values)
    with pytest.raises(ValueError, match="ascending"):
        Tracks.from_tracks([Track(np.array([2, 1]), np.array([1.0, 1.0], np.float32), 5)])
    with pytest.raises(ValueError, match="ascending"):
        Tracks.from_tracks([Track(np.array([5]), np.array([1.0], np.float32), 5)])


# --- the rules of Table 2 ----------------------------------------------------------------------

def test_dead_and_not_enough_data():
    pattern, stats = classify([])
    assert pattern == "dead" and stats["n_top"] == 0
    assert all(np.isnan(stats[name]) for name in stats if name != "n_top")
    assert classify([track(30, [(5, 1)])] * 4)[0] == "not_enough_data"
    assert classify([track(30, [(5, 1)])] * 5)[0] == "point"
    assert classify([track(30, [(5, 1)])] * 4, min_top=4)[0] == "point"


def test_periodic():
    tracks = [spaced([7] * 11, 2) for _ in range(5)]
    pattern, stats = classify(tracks)
    assert pattern == "periodic"
    assert stats["median_contigs"] == 12 and stats["top_two_distance_share"] == 1.0
    assert stats["median_top_contig_length"] == 2


def test_periodic_needs_over_half_of_distances_on_the_two_most_common():
    # Pooled over 5 tracks: 7 x15, 8 x15, six others x5 each: exactly half.
    half = [spaced([7, 7, 7, 8, 8, 8, 9, 10, 11, 12, 13, 14], 2) for _ in range(5)]
    pattern, stats = classify(half)
    assert stats["top_two_distance_share"] == 0.5
    assert pattern == "motif_short"
    # 7 x20, 8 x15 of 60: over half.
    over = [spaced([7, 7, 7, 7, 8, 8, 8, 9, 10, 11, 12, 13], 2) for _ in range(5)]
    pattern, stats = classify(over)
    assert pattern == "periodic" and stats["top_two_distance_share"] == pytest.approx(35 / 60)


def test_share_with_tied_second_most_common_distance():
    # Pooled: 7 x20, 8 x10, 9 x10, 10 x5 of 45: the two most common hold 30 whichever of 8 or 9.
    tracks = [spaced([7, 7, 7, 7, 8, 8, 9, 9, 10], 2) for _ in range(5)]
    assert classify(tracks)[1]["top_two_distance_share"] == pytest.approx(30 / 45)


def test_periodic_needs_more_than_ten_contigs():
    assert classify([spaced([7] * 9, 2) for _ in range(5)])[0] == "motif_short"  # median 10 contigs
    assert classify([spaced([7] * 10, 2) for _ in range(5)])[0] == "periodic"  # median 11


def test_periodic_needs_top_contigs_shorter_than_ten():
    exactly_ten = [spaced([12] * 11, 10) for _ in range(5)]
    pattern, stats = classify(exactly_ten)
    assert stats["median_top_contig_length"] == 10 and stats["mean_coverage"] < 0.8
    assert pattern == "motif_short"
    assert classify([spaced([12] * 11, 9) for _ in range(5)])[0] == "periodic"


def test_rule_order_periodic_before_point():
    tracks = [spaced([7] * 11, 1) for _ in range(5)]  # periodic and point both hold
    pattern, stats = classify(tracks)
    assert stats["median_top_contig_length"] == 1
    assert pattern == "periodic"
    assert classify(tracks[:4])[0] == "not_enough_data"  # and enough data comes before both


def test_rule_order_point_before_whole():
    # One-residue sequences: coverage 1, top contig 1.
    assert classify([np.ones(1, np.float32)] * 5)[0] == "point"


def test_point_uses_the_contig_holding_the_maximum():
    tracks = [track(40, [(3, 8), (20, 1)], peak=1) for _ in range(5)]
    assert classify(tracks)[0] == "point"
    tracks = [track(40, [(3, 8), (20, 1)], peak=0) for _ in range(5)]
    assert classify(tracks)[0] == "motif_short"


@pytest.mark.parametrize("contig_length, expected", [
    (2, "motif_short"), (19, "motif_short"),
    (20, "motif_medium"), (49, "motif_medium"),
    (50, "motif_long"), (299, "motif_long"),
    (300, "other"),
])
def test_motif_length_boundaries(contig_length, expected):
    pattern, stats = classify(single_contig(contig_length, 4 * contig_length))
    assert stats["median_top_contig_length"] == contig_length and stats["mean_coverage"] == 0.25
    assert pattern == expected


def test_long_top_contig_with_high_coverage_is_whole():
    assert classify(single_contig(300, 320))[0] == "whole"


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    tracks = [track(40, [(0, 1)])] * 3 + [track(40, [(0, 2)])] * 3
    pattern, stats = classify(tracks)
    assert stats["median_top_contig_length"] == 1.5
    assert pattern == "motif_short"


def test_coverage_exactly_80_percent_is_neither_motif_nor_whole():
    assert classify(single_contig(8, 10))[0] == "other"
    # Coverages 0.6 ... 1.0: the mean is 0.8 exactly, but its float sum lands an ulp below.
    counts = (6, 7, 8, 9, 10)
    assert sum(n / 10 for n in counts) / 5 < 0.8
    tracks = [track(10, [(0, n)]) for n in counts]
    pattern, stats = classify(tracks)
    assert stats["mean_coverage"] == 0.8
    assert pattern == "other"


def test_coverage_either_side_of_80_percent():
    assert classify(single_contig(9, 10))[0] == "whole"
    assert classify(single_contig(79, 100))[0] == "motif_long"
    assert classify(single_contig(81, 100))[0] == "whole"


# --- top sequences -----------------------------------------------------------------------------

def maxima_from(entries, protein_ids, n_latents):
    """MaxActivations from {(protein id, latent): value}."""
    rows = sorted((protein_ids.index(p), j, v) for (p, j), v in entries.items())
    protein, latent, value = (np.array(c) for c in zip(*rows))
    return MaxActivations(list(protein_ids), protein.astype(np.int64), latent.astype(np.int32),
                          value.astype(np.float32), n_latents)


def test_top_sequences_fraction_ties_cap_and_test_only():
    cap_ids = [f"q{i:02d}" for i in range(15)][::-1]  # first appearance in reverse id order
    protein_ids = ["p3", "p1", "p2", "p0", "train"] + cap_ids
    entries = {("p3", 0): 1.0, ("p1", 0): 0.75, ("p2", 0): 0.74, ("p0", 0): 0.75, ("train", 0): 5.0,
               ("train", 1): 1.0}
    entries.update({(q, 2): 0.5 for q in cap_ids})
    maxima = maxima_from(entries, protein_ids, 4)
    test = [p for p in protein_ids if p != "train"]
    top = top_sequences(maxima, test)
    assert top[0] == ["p3", "p0", "p1"]  # 0.75 is in, 0.74 out; ties by id, not by appearance
    assert top[1] == []  # fires only outside the test set
    assert top[2] == sorted(cap_ids)[:12]
    assert top[3] == []
    assert top_sequences(maxima, test, fraction=0.7)[0] == ["p3", "p0", "p1", "p2"]
    assert top_sequences(maxima, test, n_top=2)[0] == ["p3", "p0"]


# --- collecting tracks from code shards --------------------------------------------------------

def write_codes(path, rows, k):
    """A code shard from rows (seq_id, pos, [(latent, value), ...]); slots padded with
    (7, 0.0), the inactive slots a TopK SAE leaves."""
    idx = np.full((len(rows), k), 7, np.int32)
    val = np.zeros((len(rows), k), np.float32)
    for r, (_, _, slots) in enumerate(rows):
        for s, (latent, value) in enumerate(sorted(slots, key=lambda lv: -lv[1])):
            idx[r, s], val[r, s] = latent, value
    schema = code_schema(k, {"n_latents": 8, "k": k})
    batch = _code_batch(schema, pa.array([r[0] for r in rows], pa.string()),
                        np.array([r[1] for r in rows], np.int32), idx, val)
    pq.write_table(pa.Table.from_batches([batch]), path)
    return path


def test_collect_tracks_from_two_shards(tmp_path):
    first = write_codes(tmp_path / "a.parquet", [
        ("A", 0, [(2, 1.0)]),
        ("A", 1, [(2, 2.0), (5, 0.5)]),
        ("C", 0, [(2, 9.0)]),  # not wanted
        ("A", 2, [(5, 1.0)]),
        ("A", 3, [(2, 0.0), (5, 1.5)]),  # latent 2 in a zero slot: inactive
    ], k=3)
    second = write_codes(tmp_path / "b.parquet", [
        ("B", 0, []),
        ("B", 1, [(2, 0.3)]),
        ("B", 2, [(2, 0.4), (7, 1.0)]),
        ("A", 4, [(2, 3.0)]),
        ("B", 3, [(6, 1.0)]),
    ], k=3)
    wanted = [("A", 2), ("B", 2), ("A", 5), ("B", 7), ("B", 0), ("A", 2)]
    lengths = {"A": 6, "B": 4, "C": 1}
    tracks = collect_tracks([first, second], wanted, lengths, batch_rows=2)
    expected = [[1, 2, 0, 0, 3, 0], [0, 0.3, 0.4, 0], [0, 0.5, 1, 1.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0],
                [1, 2, 0, 0, 3, 0]]
    assert len(tracks) == len(wanted)
    for i, dense in enumerate(expected):
        np.testing.assert_allclose(tracks[i].to_dense(), dense)
        assert tracks[i].length == len(dense)

    with pytest.raises(ValueError, match="outside its length"):
        collect_tracks([first, second], wanted, {"A": 4, "B": 4})
    with pytest.raises(ValueError, match="no sequence length"):
        collect_tracks([first, second], wanted, {"A": 6})
    with pytest.raises(ValueError, match="more than once"):
        collect_tracks([first, first], [("A", 2)], lengths)


# --- the whole table ---------------------------------------------------------------------------

TEST_IDS = [f"t{i}" for i in range(6)]
LENGTH = 100
EXPECTED = ["point", "motif_short", "whole", "periodic", "dead", "not_enough_data", "motif_medium", "dead"]


def planted_rows():
    """Per residue of six test proteins and one train protein, the latents planted to show
    the patterns in EXPECTED (latent 7 only ever sits in zero-valued slots)."""
    rows = []
    for p, pid in enumerate(TEST_IDS + ["train0"]):
        for pos in range(LENGTH):
            slots = []
            if pid == "train0":
                slots.append((4, 5.0))  # fires outside the test set only: dead
            else:
                if pos in (10 + p, 50):
                    slots.append((0, 2.0 + 0.1 * p if pos != 50 else 1.0))  # point
                if 20 <= pos < 25:
                    # motif of 5; in t5 too weak (< 0.75 of the max) to make the top sequences
                    slots.append((1, (3.0 if pos == 22 else 1.0) * (0.1 if pid == "t5" else 1.0)))
                slots.append((2, 1.0 if pos == 0 else 0.5))  # whole
                if pos % 7 == 0:
                    slots.append((3, 1.5))  # periodic, 15 single-residue contigs
                if p < 3 and pos == 60:
                    slots.append((5, 1.0))  # three proteins only: not enough data
                if 30 <= pos < 55:
                    slots.append((6, 1.0))  # motif of 25
            rows.append((pid, pos, slots))
    return rows


def test_activation_patterns_on_planted_latents(tmp_path):
    path = write_codes(tmp_path / "codes.parquet", planted_rows(), k=6)
    with pq.ParquetFile(path) as parquet:
        assert parquet.metadata.num_rows == 7 * LENGTH
    maxima = max_activation_per_protein(path)
    lengths = {pid: LENGTH for pid in TEST_IDS + ["train0"]}
    table = activation_patterns(path, maxima, TEST_IDS, lengths, batch_rows=128)
    assert list(table.columns) == ["latent", "pattern", "n_top", "median_contigs", "top_two_distance_share",
                                   "median_top_contig_length", "mean_coverage", "test_max", "top_proteins"]
    assert table["latent"].tolist() == list(range(8))
    assert table["pattern"].tolist() == EXPECTED
    assert table["n_top"].tolist() == [6, 5, 6, 6, 0, 3, 6, 0]
    assert table.loc[0, "top_proteins"] == "t5;t4;t3;t2;t1;t0"  # largest maximum first
    assert table.loc[1, "top_proteins"] == "t0;t1;t2;t3;t4"  # equal maxima by id; t5 below 0.75
    assert table.loc[4, "top_proteins"] == "" and table.loc[4, "test_max"] == 0
    np.testing.assert_allclose(table["test_max"], [2.5, 3.0, 1.0, 1.5, 0, 1.0, 1.0, 0], rtol=1e-6)
    periodic = table.loc[3]
    assert periodic["median_contigs"] == 15 and periodic["top_two_distance_share"] == 1.0
    assert table.loc[2, "mean_coverage"] == 1.0
    assert table.loc[6, "median_top_contig_length"] == 25

    summary = summarise_patterns(table)
    assert summary["n_latents"] == 8
    assert list(summary["counts"]) == list(PATTERNS)
    assert summary["counts"]["dead"] == 2 and summary["counts"]["motif_long"] == 0
    assert summary["shares"]["dead"] == 0.25
    assert sum(summary["counts"].values()) == 8
