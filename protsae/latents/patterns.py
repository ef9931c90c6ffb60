"""Activation pattern of every latent (METHODS.md section 6, paper Table 2).

Top sequences. A latent's top sequences are the test proteins whose maximum activation is at least
``fraction`` (0.75) of the latent's maximum over the test set, at most ``n_top`` (12) of them,
largest maximum first; equal maxima are ordered by protein id (string order), so the choice does
not depend on the order of the code shards.

Tracks. A track is one top sequence's per-residue activation of the latent. Tracks are sparse, so
they are stored as their active residues only: `Track` (positions ascending, values > 0, and the
sequence length) for one, `Tracks` (CSR-like flat arrays) for many. A residue is active when its
activation is > 0; contigs are maximal runs of consecutive active residues; the top contig holds
the track's maximum (the first position of the maximum if it is reached more than once);
coverage = active residues / sequence length.

Rules, applied in this order, the first that matches deciding (medians over the top sequences;
a median of an even count is the mean of the two middle values):

1. ``dead``: no test sequence activates the latent (no top sequence).
2. ``not_enough_data``: fewer than ``min_top`` (5) top sequences.
3. ``periodic``: pooling the distances between the starts of successive contigs over the top
   sequences, over 50% of them equal one of the two most common distances; the median number of
   contigs > 10; and the median top-contig length < 10. The share is (count of the most common
   distance + count of the second most common) / number of distances. Where several distances tie,
   the two most common are the two with the highest counts, ties broken by the smaller distance;
   the share depends only on the two highest counts, so the tie rule cannot change it. Without
   any distance (every top sequence has one contig) the share is NaN and the rule fails.
4. ``point``: median top-contig length == 1.
5. ``motif_short`` / ``motif_medium`` / ``motif_long``: median top-contig length in (1, 20) /
   [20, 50) / [50, 300), and mean coverage < 0.8.
6. ``whole``: mean coverage > 0.8.
7. ``other``: anything else (e.g. mean coverage exactly 0.8, or a median top-contig length of 300
   or more with mean coverage <= 0.8).

Comparisons are exact: medians of integers are exact in floating point, the periodic share is
compared with integer counts, and a mean coverage within 1e-9 of 0.8 is recomputed with fractions,
so a mean that is 0.8 in exact arithmetic is neither motif nor whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from protsae.activations.storage import list_to_numpy, shard_batches
from protsae.codes.maxima import MaxActivations

PATTERNS = ("dead", "not_enough_data", "periodic", "point", "motif_short", "motif_medium", "motif_long",
            "whole", "other")
"""Table 2's classes in the order `classify` tries them."""
REPORT_ORDER = ("point", "periodic", "motif_short", "motif_medium", "motif_long", "whole", "other",
                "not_enough_data", "dead")
"""The same classes as summaries and figures list them: the verdicts first, the two "no verdict"
classes last."""
N_TOP = 12  # the number of sequences InterProt's visualiser shows
TOP_FRACTION = 0.75
MIN_TOP = 5
PERIODIC_MIN_CONTIGS = 10  # median contigs must exceed this
PERIODIC_MAX_TOP_LENGTH = 10  # median top-contig length must be below this
MOTIF_EDGES = (1, 20, 50, 300)  # short (1, 20), medium [20, 50), long [50, 300)
WHOLE_COVERAGE = Fraction(4, 5)
# Float means within this of 0.8 are recomputed exactly; the float error of a mean of a few
# hundred coverages is ~1e-13, far inside it.
_EXACT_BAND = 1e-9
STAT_COLUMNS = ("n_top", "median_contigs", "top_two_distance_share", "median_top_contig_length", "mean_coverage")


class Track(NamedTuple):
    """One sequence's activations of one latent, sparse: positions (n_active,) int64 ascending,
    values (n_active,) float32 > 0, and length, the residues in the sequence."""

    positions: np.ndarray
    values: np.ndarray
    length: int

    @classmethod
    def from_dense(cls, values: np.ndarray) -> Track:
        """The sparse form of a dense (L,) track."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1:
            raise ValueError(f"a dense track is one-dimensional, got shape {values.shape}")
        positions = np.flatnonzero(values > 0)
        return cls(positions.astype(np.int64), values[positions], len(values))

    def to_dense(self) -> np.ndarray:
        """(length,) float32, zero where inactive."""
        dense = np.zeros(self.length, dtype=np.float32)
        dense[self.positions] = self.values
        return dense


@dataclass
class Tracks:
    """Many sparse tracks in flat arrays: track i owns entries ``offsets[i]:offsets[i + 1]`` of
    positions (nnz,) int64 (ascending within a track) and values (nnz,) float32, and has
    lengths[i] residues. offsets: (n_tracks + 1,) int64; lengths: (n_tracks,) int64."""

    offsets: np.ndarray
    positions: np.ndarray
    values: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Track:
        span = slice(self.offsets[i], self.offsets[i + 1])
        return Track(self.positions[span], self.values[span], int(self.lengths[i]))

    @property
    def n_active(self) -> np.ndarray:
        """(n_tracks,) int64 active residues per track."""
        return np.diff(self.offsets)

    @classmethod
    def from_tracks(cls, tracks: Sequence[Track | np.ndarray]) -> Tracks:
        """Pack `Track`s or dense (L,) arrays; checks that each is a valid sparse track."""
        tracks = [t if isinstance(t, Track) else Track.from_dense(t) for t in tracks]
        for t in tracks:
            positions = np.asarray(t.positions)
            if len(positions) != len(t.values):
                raise ValueError("a track needs one value per position")
            if len(positions) and (positions[0] < 0 or positions[-1] >= t.length or np.any(np.diff(positions) <= 0)):
                raise ValueError(f"track positions must be strictly ascending within [0, {t.length})")
            if np.any(np.asarray(t.values) <= 0):
                raise ValueError("a sparse track holds active residues only (values > 0)")
        counts = [len(t.positions) for t in tracks]
        return cls(
            offsets=np.r_[0, np.cumsum(counts, dtype=np.int64)].astype(np.int64),
            positions=np.concatenate([np.asarray(t.positions, np.int64) for t in tracks] or [np.zeros(0, np.int64)]),
            values=np.concatenate([np.asarray(t.values, np.float32) for t in tracks] or [np.zeros(0, np.float32)]),
            lengths=np.array([t.length for t in tracks], dtype=np.int64),
        )


class TrackStats(NamedTuple):
    """Contig statistics of one track: contig_starts (n_contigs,) int64 first residue of each
    contig; top_contig_length 0 and coverage 0 for a track without active residues."""

    n_contigs: int
    contig_starts: np.ndarray
    top_contig_length: int
    coverage: float
    n_active: int


@dataclass
class TrackStatsBatch:
    """`TrackStats` of many tracks: n_contigs, top_contig_length, n_active, lengths (n_tracks,)
    int64, coverage (n_tracks,) float64; contig starts flat, track i owning
    ``contig_starts[contig_offsets[i]:contig_offsets[i + 1]]`` (contig_offsets (n_tracks + 1,))."""

    n_contigs: np.ndarray
    top_contig_length: np.ndarray
    n_active: np.ndarray
    lengths: np.ndarray
    coverage: np.ndarray
    contig_starts: np.ndarray
    contig_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.n_contigs)

    def __getitem__(self, i: int) -> TrackStats:
        return TrackStats(
            n_contigs=int(self.n_contigs[i]),
            contig_starts=self.contig_starts[self.contig_offsets[i]:self.contig_offsets[i + 1]],
            top_contig_length=int(self.top_contig_length[i]),
            coverage=float(self.coverage[i]),
            n_active=int(self.n_active[i]),
        )


def batch_track_stats(tracks: Tracks) -> TrackStatsBatch:
    """Contig statistics of every track at once, without a loop over tracks or residues."""
    if np.any(tracks.lengths <= 0):
        raise ValueError("every track needs a sequence length > 0")
    n_tracks, nnz = len(tracks), len(tracks.positions)
    n_active = tracks.n_active
    track_of = np.repeat(np.arange(n_tracks), n_active)
    positions = tracks.positions
    # A contig starts at a track's first active residue or after a gap; the track check keeps a
    # track that ends at residue p from merging with a next track that starts at p + 1.
    starts_contig = np.ones(nnz, dtype=bool)
    starts_contig[1:] = (positions[1:] != positions[:-1] + 1) | (track_of[1:] != track_of[:-1])
    contig_first = np.flatnonzero(starts_contig)  # entry index of each contig's first residue
    contig_length = np.diff(np.r_[contig_first, nnz])
    n_contigs = np.bincount(track_of[contig_first], minlength=n_tracks)
    top_contig_length = np.zeros(n_tracks, dtype=np.int64)
    nonempty = n_active > 0
    if nnz:
        # reduceat over the starts of non-empty tracks only: empty tracks own no entries, so the
        # segments between these starts are exactly the non-empty tracks.
        segment = tracks.offsets[:-1][nonempty]
        track_max = np.maximum.reduceat(tracks.values, segment)
        is_max = tracks.values == np.repeat(track_max, n_active[nonempty])
        first_max = np.minimum.reduceat(np.where(is_max, np.arange(nnz), nnz), segment)
        contig_of_entry = np.cumsum(starts_contig) - 1
        top_contig_length[nonempty] = contig_length[contig_of_entry[first_max]]
    return TrackStatsBatch(
        n_contigs=n_contigs.astype(np.int64),
        top_contig_length=top_contig_length,
        n_active=n_active.astype(np.int64),
        lengths=tracks.lengths.astype(np.int64),
        coverage=n_active / tracks.lengths,
        contig_starts=positions[contig_first],
        contig_offsets=np.r_[0, np.cumsum(n_contigs)].astype(np.int64),
    )


def track_stats(values: np.ndarray) -> TrackStats:
    """Contig statistics of one dense (L,) track."""
    return batch_track_stats(Tracks.from_tracks([Track.from_dense(values)]))[0]


def _group_median(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups,) float64 median of ``values`` per group, NaN for an empty group."""
    order = np.lexsort((values, group))
    ordered = values[order].astype(np.float64)
    size = np.bincount(group, minlength=n_groups)
    first = np.r_[0, np.cumsum(size)[:-1]]
    median = np.full(n_groups, np.nan)
    has = size > 0
    median[has] = (ordered[first[has] + (size[has] - 1) // 2] + ordered[first[has] + size[has] // 2]) / 2
    return median


def _top_two_distance_counts(stats: TrackStatsBatch, group: np.ndarray, n_groups: int
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the number of pooled contig-start distances and how many of them equal one of
    the two most common distances: two (n_groups,) int64 arrays."""
    contig_track = np.repeat(np.arange(len(stats)), stats.n_contigs)
    successive = contig_track[1:] == contig_track[:-1]
    distance = np.diff(stats.contig_starts)[successive]
    distance_group = group[contig_track[1:][successive]].astype(np.int64)
    n_distances = np.bincount(distance_group, minlength=n_groups)
    top_two = np.zeros(n_groups, dtype=np.int64)
    if distance.size:
        key_base = int(distance.max()) + 1
        keys, counts = np.unique(distance_group * key_base + distance, return_counts=True)
        key_group = keys // key_base
        order = np.lexsort((-counts, key_group))  # per group, the most common distance first
        key_group, counts = key_group[order], counts[order]
        rank = np.arange(len(keys)) - np.searchsorted(key_group, key_group, side="left")
        top_two = np.bincount(key_group[rank < 2], weights=counts[rank < 2], minlength=n_groups).astype(np.int64)
    return n_distances, top_two


def _mean_coverage(stats: TrackStatsBatch, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group the mean coverage (float64, NaN for an empty group) and its side of 0.8
    (int: -1 below, 0 equal, +1 above), exact as described in the module docstring."""
    n_top = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(group, weights=stats.coverage, minlength=n_groups) / n_top
    side = np.nan_to_num(np.sign(mean - float(WHOLE_COVERAGE)))  # 0 for an empty group
    near = np.flatnonzero(np.abs(mean - float(WHOLE_COVERAGE)) < _EXACT_BAND)
    if near.size:
        by_group = np.argsort(group, kind="stable")
        first = np.r_[0, np.cumsum(n_top)]
        for g in near:
            members = by_group[first[g]:first[g + 1]]
            exact = sum(Fraction(int(a), int(n)) for a, n in zip(stats.n_active[members], stats.lengths[members]))
            exact /= len(members)
            mean[g] = float(exact)
            side[g] = (exact > WHOLE_COVERAGE) - (exact < WHOLE_COVERAGE)
    return mean, side.astype(np.int64)


def classify_batch(stats: TrackStatsBatch, group: np.ndarray, n_groups: int, min_top: int = MIN_TOP
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Classify ``n_groups`` latents at once from the stats of their top-sequence tracks.

    group: (n_tracks,) int, the latent (0 <= group < n_groups) each track belongs to; a latent
    with no track is dead. Returns the pattern per latent ((n_groups,) str array of names from
    `PATTERNS`) and the statistics of `STAT_COLUMNS`, each (n_groups,): n_top int64, the others
    float64, NaN where undefined (no tracks; no contig-start distances for the share).
    """
    group = np.asarray(group, dtype=np.int64)
    if len(group) != len(stats):
        raise ValueError(f"{len(group)} group labels for {len(stats)} tracks")
    if group.size and (group.min() < 0 or group.max() >= n_groups):
        raise ValueError(f"group labels must lie in [0, {n_groups})")
    if np.any(stats.n_active == 0):
        raise ValueError("a top sequence must have at least one active residue")
    n_top = np.bincount(group, minlength=n_groups)
    median_contigs = _group_median(stats.n_contigs, group, n_groups)
    median_top = _group_median(stats.top_contig_length, group, n_groups)
    n_distances, top_two = _top_two_distance_counts(stats, group, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_distances > 0, top_two / n_distances, np.nan)
    mean_coverage, coverage_side = _mean_coverage(stats, group, n_groups)
    above, medium_from, long_from, below = MOTIF_EDGES
    motif_coverage = coverage_side < 0
    conditions = [
        n_top == 0,
        n_top < min_top,
        (2 * top_two > n_distances) & (median_contigs > PERIODIC_MIN_CONTIGS) & (median_top < PERIODIC_MAX_TOP_LENGTH),
        median_top == 1,
        (median_top > above) & (median_top < medium_from) & motif_coverage,
        (median_top >= medium_from) & (median_top < long_from) & motif_coverage,
        (median_top >= long_from) & (median_top < below) & motif_coverage,
        coverage_side > 0,
    ]
    # np.select takes the first condition that holds: the rule order of Table 2.
    patterns = np.select(conditions, np.array(PATTERNS[:-1], dtype=object), default=PATTERNS[-1])
    return patterns, {
        "n_top": n_top.astype(np.int64),
        "median_contigs": median_contigs,
        "top_two_distance_share": share,
        "median_top_contig_length": median_top,
        "mean_coverage": mean_coverage,
    }


def classify(tracks: Sequence[Track | np.ndarray] | Tracks, min_top: int = MIN_TOP) -> tuple[str, dict]:
    """Pattern of one latent from its top sequences' tracks (dense (L,) arrays, `Track`s or a
    `Tracks`), and its statistics (`STAT_COLUMNS`; n_top int, the others float, NaN where
    undefined). No tracks: dead."""
    if not isinstance(tracks, Tracks):
        tracks = Tracks.from_tracks(tracks)
    patterns, stats = classify_batch(batch_track_stats(tracks), np.zeros(len(tracks), np.int64), 1, min_top)
    return str(patterns[0]), {"n_top": int(stats["n_top"][0]),
                              **{name: float(stats[name][0]) for name in STAT_COLUMNS[1:]}}


class TopPairs(NamedTuple):
    """Every latent's top sequences, as (m,) arrays sorted by latent, then activation descending,
    then protein id: latent int64, protein (row index into ``MaxActivations.protein_ids``) int64,
    value float32; and test_max (n_latents,) float32, each latent's maximum over the test set
    (0 where dead)."""

    latent: np.ndarray
    protein: np.ndarray
    value: np.ndarray
    test_max: np.ndarray


def top_pairs(maxima: MaxActivations, test_proteins: Sequence[str], n_top: int = N_TOP,
              fraction: float = TOP_FRACTION) -> TopPairs:
    """The top sequences of every latent at once (see the module docstring)."""
    test = set(test_proteins)
    is_test = np.fromiter((pid in test for pid in maxima.protein_ids), dtype=bool, count=len(maxima.protein_ids))
    id_rank = np.empty(len(maxima.protein_ids), dtype=np.int64)
    id_rank[np.argsort(np.array(maxima.protein_ids, dtype=str), kind="stable")] = np.arange(len(maxima.protein_ids))
    keep = is_test[maxima.protein]
    latent = maxima.latent[keep].astype(np.int64)
    protein = maxima.protein[keep].astype(np.int64)
    value = maxima.value[keep].astype(np.float32)
    order = np.lexsort((id_rank[protein], -value, latent))
    latent, protein, value = latent[order], protein[order], value[order]
    first = np.flatnonzero(np.r_[True, latent[1:] != latent[:-1]]) if latent.size else np.zeros(0, np.int64)
    test_max = np.zeros(maxima.n_latents, dtype=np.float32)
    test_max[latent[first]] = value[first]
    rank = np.arange(latent.size) - np.repeat(first, np.diff(np.r_[first, latent.size]))
    # Compared in float64 so that fraction * max is not rounded to float32 first.
    chosen = (rank < n_top) & (value.astype(np.float64) >= fraction * test_max[latent].astype(np.float64))
    return TopPairs(latent[chosen], protein[chosen], value[chosen], test_max)


def top_sequences(maxima: MaxActivations, test_proteins: Sequence[str], n_top: int = N_TOP,
                  fraction: float = TOP_FRACTION) -> list[list[str]]:
    """For every latent (n_latents lists), the ids of its top test sequences, largest maximum
    first, ties by protein id."""
    pairs = top_pairs(maxima, test_proteins, n_top, fraction)
    ids = [maxima.protein_ids[p] for p in pairs.protein]
    bounds = np.r_[0, np.cumsum(np.bincount(pairs.latent, minlength=maxima.n_latents))]
    return [ids[bounds[j]:bounds[j + 1]] for j in range(maxima.n_latents)]


def collect_tracks(
    code_paths: str | os.PathLike | Sequence[str | os.PathLike],
    wanted: Sequence[tuple[str, int]],
    lengths: Mapping[str, int],
    batch_rows: int = 262144,
) -> Tracks:
    """The sparse tracks of the wanted (protein id, latent) pairs, in the order of ``wanted``,
    from one scan of the code shard(s).

    lengths: residues per protein id; the track length comes from here, not from the codes.
    Slots with val <= 0 (inactive TopK/BatchTopK slots) are ignored. A pair with no active
    residue gets an empty track. Raises ValueError for a position outside [0, length) or a
    residue that appears twice.
    """
    protein_index: dict[str, int] = {}
    pair_protein = np.fromiter((protein_index.setdefault(pid, len(protein_index)) for pid, _ in wanted),
                               dtype=np.int64, count=len(wanted))
    pair_latent = np.fromiter((latent for _, latent in wanted), dtype=np.int64, count=len(wanted))
    if pair_latent.size and pair_latent.min() < 0:
        raise ValueError("latent indices must be >= 0")
    missing = [pid for pid in protein_index if pid not in lengths]
    if missing:
        raise ValueError(f"no sequence length for {len(missing)} wanted proteins, e.g. {missing[:3]}")
    protein_length = np.array([lengths[pid] for pid in protein_index], dtype=np.int64)
    # Keys only need to be unique among wanted pairs; code latents >= key_base are never wanted.
    key_base = int(pair_latent.max()) + 1 if pair_latent.size else 1
    unique_keys, wanted_to_unique = np.unique(pair_protein * key_base + pair_latent, return_inverse=True)
    found_pair, found_pos, found_value = [], [], []
    for batch, row_protein in shard_batches(code_paths, ["pos", "idx", "val"], protein_index, batch_rows):
        rows = np.flatnonzero(row_protein >= 0)
        if rows.size == 0:
            continue
        idx = list_to_numpy(batch.column("idx"))[rows]
        val = list_to_numpy(batch.column("val"))[rows]
        pos = batch.column("pos").to_numpy(zero_copy_only=False)[rows]
        row, slot = np.nonzero((val > 0) & (idx >= 0) & (idx < key_base))
        keys = row_protein[rows][row] * key_base + idx[row, slot]
        where = np.minimum(np.searchsorted(unique_keys, keys), len(unique_keys) - 1)
        hit = unique_keys[where] == keys
        found_pair.append(where[hit])
        found_pos.append(pos[row[hit]].astype(np.int64))
        found_value.append(val[row[hit], slot[hit]].astype(np.float32))
    pair = np.concatenate(found_pair) if found_pair else np.zeros(0, np.int64)
    pos = np.concatenate(found_pos) if found_pos else np.zeros(0, np.int64)
    value = np.concatenate(found_value) if found_value else np.zeros(0, np.float32)
    order = np.lexsort((pos, pair))
    pair, pos, value = pair[order], pos[order], value[order]
    unique_length = protein_length[unique_keys // key_base]
    bad = (pos < 0) | (pos >= unique_length[pair])
    if np.any(bad):
        first_bad = np.flatnonzero(bad)[0]
        pid = list(protein_index)[int(unique_keys[pair[first_bad]] // key_base)]
        raise ValueError(f"{pid}: residue position {pos[first_bad]} outside its length "
                         f"{unique_length[pair[first_bad]]} (codes and lengths disagree)")
    if np.any((pair[1:] == pair[:-1]) & (pos[1:] == pos[:-1])):
        raise ValueError("a residue appears more than once in the codes")
    unique_offsets = np.r_[0, np.cumsum(np.bincount(pair, minlength=len(unique_keys)))].astype(np.int64)
    # Lay the unique pairs' entries out in the order of ``wanted`` (repeated pairs repeated).
    counts = np.diff(unique_offsets)[wanted_to_unique]
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    gather = np.repeat(unique_offsets[:-1][wanted_to_unique] - offsets[:-1], counts) + np.arange(offsets[-1])
    return Tracks(offsets=offsets, positions=pos[gather], values=value[gather],
                  lengths=protein_length[pair_protein])


def activation_patterns(
    code_paths: str | os.PathLike | Sequence[str | os.PathLike],
    maxima: MaxActivations,
    test_proteins: Sequence[str],
    lengths: Mapping[str, int],
    n_top: int = N_TOP,
    fraction: float = TOP_FRACTION,
    min_top: int = MIN_TOP,
    batch_rows: int = 262144,
) -> pd.DataFrame:
    """The activation pattern of every latent, one row per latent (all ``maxima.n_latents``).

    maxima: per-protein maxima of the same codes (`max_activation_per_protein`); only the test
    proteins among its rows are used. Columns: latent, pattern, n_top, median_contigs,
    top_two_distance_share, median_top_contig_length, mean_coverage, test_max (0 for a dead
    latent), top_proteins (the top sequences' ids joined by ';', best first).
    """
    pairs = top_pairs(maxima, test_proteins, n_top, fraction)
    ids = [maxima.protein_ids[p] for p in pairs.protein]
    tracks = collect_tracks(code_paths, list(zip(ids, pairs.latent.tolist())), lengths, batch_rows)
    if np.any(tracks.n_active == 0):
        first = int(np.flatnonzero(tracks.n_active == 0)[0])
        raise ValueError(f"latent {pairs.latent[first]} has no active residue in {ids[first]} in the codes, "
                         "though the maxima say it has: were they computed from other codes?")
    patterns, stats = classify_batch(batch_track_stats(tracks), pairs.latent, maxima.n_latents, min_top)
    bounds = np.r_[0, np.cumsum(stats["n_top"])]
    return pd.DataFrame({
        "latent": np.arange(maxima.n_latents, dtype=np.int64),
        "pattern": patterns.astype(str),
        **stats,
        "test_max": pairs.test_max,
        "top_proteins": [";".join(ids[bounds[j]:bounds[j + 1]]) for j in range(maxima.n_latents)],
    })


def pattern_columns(counts: Mapping[str, int]) -> dict[str, int]:
    """``pattern_<class>`` count columns of a summary row, in `REPORT_ORDER`, from the ``counts``
    of `summarise_patterns`."""
    return {f"pattern_{name}": counts.get(name, 0) for name in REPORT_ORDER}


def summarise_patterns(table: pd.DataFrame) -> dict:
    """Counts and shares (of all latents) of every pattern class, in `PATTERNS` order, zeros
    included: {"n_latents": n, "counts": {pattern: int}, "shares": {pattern: float}}."""
    unknown = set(table["pattern"]) - set(PATTERNS)
    if unknown:
        raise ValueError(f"unknown pattern names: {sorted(unknown)}")
    counts = table["pattern"].value_counts()
    n = len(table)
    return {
        "n_latents": n,
        "counts": {p: int(counts.get(p, 0)) for p in PATTERNS},
        "shares": {p: (int(counts.get(p, 0)) / n if n else float("nan")) for p in PATTERNS},
    }
