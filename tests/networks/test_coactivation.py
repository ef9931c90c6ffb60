"""Co-activation and decoder-similarity edges on inputs whose answers are known."""

import numpy as np
import pytest

from protsae.networks.coactivation import CoactivationCounts, active_matrix
from protsae.networks.decoder import best_decoder_matches


def random_codes(rng, n, k, n_latents, p_zero=0.3):
    idx = np.stack([rng.choice(n_latents, k, replace=False) for _ in range(n)]).astype(np.int32)
    val = (rng.random((n, k)) * (rng.random((n, k)) > p_zero)).astype(np.float32)
    return idx, val


def dense_active(idx, val, n_latents):
    dense = np.zeros((len(idx), n_latents), bool)
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    dense[rows[val.ravel() > 0], idx.ravel()[val.ravel() > 0]] = True
    return dense


def test_sparse_counts_equal_a_dense_computation():
    rng = np.random.default_rng(0)
    source, target = random_codes(rng, 300, 4, 12), random_codes(rng, 300, 3, 9)
    counts = CoactivationCounts(12, 9)
    for rows in (slice(0, 120), slice(120, 300)):  # two batches add up
        counts.add((source[0][rows], source[1][rows]), (target[0][rows], target[1][rows]))
    a, b = dense_active(*source, 12), dense_active(*target, 9)
    both = a.T.astype(int) @ b.astype(int)
    edges = counts.edges(min_both=1)
    assert len(edges) == int((both >= 1).sum())
    for row in edges.itertuples():
        n_ab, n_a, n_b, n = both[row.source, row.target], a[:, row.source].sum(), b[:, row.target].sum(), 300
        assert (row.n_both, row.n_source, row.n_target) == (n_ab, n_a, n_b)
        assert row.npmi == pytest.approx(np.log(n_ab * n / (n_a * n_b)) / -np.log(n_ab / n))
        assert row.jaccard == pytest.approx(n_ab / (n_a + n_b - n_ab))
    assert edges["npmi"].is_monotonic_decreasing
    assert (counts.edges(min_both=5)["n_both"] >= 5).all()


def test_planted_and_independent_pairs():
    """Latent 0 (source) and latent 0 (target) fire on the same residues: NPMI 1, Jaccard 1.
    Source latent 1 and target latent 1 fire independently, each on half the residues: NPMI ~0."""
    rng = np.random.default_rng(1)
    n = 20000
    planted = rng.random(n) < 0.1
    s1, t1 = rng.random(n) < 0.5, rng.random(n) < 0.5
    source = (np.stack([np.zeros(n), np.ones(n)], 1).astype(np.int32), np.stack([planted, s1], 1).astype(np.float32))
    target = (np.stack([np.zeros(n), np.ones(n)], 1).astype(np.int32), np.stack([planted, t1], 1).astype(np.float32))
    counts = CoactivationCounts(2, 2)
    counts.add(source, target)
    edges = counts.edges(min_both=1).set_index(["source", "target"])
    assert edges.loc[(0, 0), "npmi"] == pytest.approx(1.0) and edges.loc[(0, 0), "jaccard"] == pytest.approx(1.0)
    assert abs(edges.loc[(1, 1), "npmi"]) < 0.02
    assert (0, 1) not in edges.index or edges.loc[(0, 1), "npmi"] < 0.05


def test_one_sae_with_itself_keeps_each_pair_once():
    idx = np.array([[0, 1], [0, 1], [1, 2], [0, 2]], np.int32)
    val = np.ones((4, 2), np.float32)
    counts = CoactivationCounts(3, 3, same=True)
    counts.add((idx, val))
    edges = counts.edges(min_both=1)
    assert sorted(zip(edges["source"], edges["target"], edges["n_both"])) == [(0, 1, 2), (0, 2, 1), (1, 2, 1)]
    with pytest.raises(ValueError, match="same residues"):
        CoactivationCounts(3, 3).add((idx, val), (idx[:3], val[:3]))


def test_inactive_slots_and_bad_indices():
    matrix = active_matrix(np.array([[0, 1]], np.int32), np.array([[1.0, 0.0]], np.float32), 2)
    assert matrix.toarray().tolist() == [[1, 0]]
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        active_matrix(np.array([[2, 0]], np.int32), np.ones((1, 2), np.float32), 2)


def test_decoder_best_match_finds_the_planted_direction():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(50, 16))
    permutation = rng.permutation(50)
    source = 3.0 * target[permutation] + 0.01 * rng.normal(size=(50, 16))  # scaled copies, shuffled
    matches = best_decoder_matches(source, target, chunk=7)
    assert (matches["target"].to_numpy() == permutation).all() and (matches["cosine"] > 0.99).all()
    own = best_decoder_matches(target, target, exclude_self=True)
    assert (own["target"].to_numpy() != np.arange(50)).all() and (own["cosine"] < 1).all()
    with pytest.raises(ValueError, match="not the same residual stream"):
        best_decoder_matches(source, target[:, :8])
