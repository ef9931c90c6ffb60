"""The bootstrap interval of the family-specific count: the vectorised re-scoring equals a slow
per-latent, per-resample loop; unresampled weights give the sweep's own test F1; a count that
every resample keeps has a degenerate interval; and 16k latents stay fast."""

import time

import numpy as np
import pandas as pd
import pytest
from test_specificity import IDS, LABELS, SPLIT, labels_frame, to_maxima

from protsae.bootstrap import BootstrapSettings, unit_weights
from protsae.latents import specificity
from protsae.latents.specificity import family_f1_sweep, summarise_family_f1
from protsae.latents.specificity_bootstrap import (
    family_count_interval,
    resampled_family_f1,
)


def random_problem(rng, n_proteins=240, n_latents=150, n_families=20):
    ids = [f"R{i:04d}" for i in rng.permutation(n_proteins)]
    split = pd.Series({p: "train" if rng.random() < 0.5 else "test" for p in ids})
    family_of = rng.integers(0, n_families, n_proteins)
    pairs = [(p, f"IPR{family_of[i]:06d}") for i, p in enumerate(ids) if rng.random() < 0.8]
    pairs += [(p, f"IPR{rng.integers(n_families):06d}") for p in ids if rng.random() < 0.2]  # multi-label
    labels = labels_frame(pairs)
    frequency = rng.choice([0.0, 0.02, 0.1, 0.6, 0.95], size=n_latents)  # some predict most proteins
    dense = np.where(rng.random((n_proteins, n_latents)) < frequency, rng.lognormal(0, 1, (n_proteins, n_latents)), 0)
    for j in rng.choice(n_latents, 40, replace=False):
        members = family_of == rng.integers(n_families)
        dense[:, j] = np.where(members, rng.uniform(0.4, 1.0, n_proteins), dense[:, j] * 0.1)
    # Flat latents: every threshold calls (nearly) every protein, so they predict most of the test set.
    for j in rng.choice(n_latents, 10, replace=False):
        dense[:, j] = np.where(rng.random(n_proteins) < 0.9, rng.uniform(0.95, 1.0, n_proteins), 0)
    dense = dense.astype(np.float32)
    dense[rng.random(n_proteins) < 0.05] = 0  # proteins no latent fires on
    return ids, split, labels, dense


def slow_resampled_f1(table, dense, ids, split, labels, weights, test_ids):
    """Per latent and resample, on the dense array: the chosen pair applied to the test proteins,
    each counted by its weight."""
    row_of = {p: i for i, p in enumerate(ids)}
    test_rows = [row_of[p] for p in test_ids]
    members = labels.groupby("accession")["protein"].apply(set)
    scored = table[table["status"] == "scored"]
    out = np.zeros((len(scored), len(weights)))
    for s, row in enumerate(scored.itertuples()):
        ratio = dense[test_rows, row.latent].astype(np.float64) / row.norm_max
        predicted = ratio >= row.threshold
        positive = np.array([p in members[row.family] for p in test_ids])
        for b, w in enumerate(weights):
            tp = (w * (predicted & positive)).sum()
            out[s, b] = 2 * tp / ((w * predicted).sum() + (w * positive).sum()) if tp else 0.0
    return out


@pytest.mark.parametrize("chunk", [97, 1 << 18])
def test_vectorised_bootstrap_equals_a_slow_loop(monkeypatch, chunk):
    monkeypatch.setattr(specificity, "_CHUNK", chunk)
    rng = np.random.default_rng(11)
    ids, split, labels, dense = random_problem(rng)
    maxima = to_maxima(dense, ids, reverse=True)
    table = family_f1_sweep(maxima, split, labels)
    settings = BootstrapSettings(n_resamples=30, seed=5)
    f1, test_ids = resampled_family_f1(table, maxima, split, labels, settings, block=7)
    assert sorted(test_ids) == sorted(p for p in ids if split[p] == "test")
    weights = unit_weights(test_ids, 30, 5)
    np.testing.assert_allclose(f1, slow_resampled_f1(table, dense, ids, split, labels, weights, test_ids), atol=1e-12)
    # Latents predicting over half the test set went through the complement path.
    scored = table[table["status"] == "scored"]
    assert (scored["test_predicted"] > len(test_ids) / 2).sum() >= 5
    assert (f1 > 0.7).any() and (f1 < 0.7).any()


def test_unit_weights_give_the_sweeps_own_test_f1(monkeypatch):
    rng = np.random.default_rng(12)
    ids, split, labels, dense = random_problem(rng)
    maxima = to_maxima(dense, ids)
    table = family_f1_sweep(maxima, split, labels)
    # A single resample with every weight 1 is the test set itself: patch the draw to give it.
    monkeypatch.setattr("protsae.bootstrap.unit_draws", lambda n_units, n_resamples, rng: np.ones((1, n_units), int))
    f1, _ = resampled_family_f1(table, maxima, split, labels, BootstrapSettings(1, 0))
    np.testing.assert_allclose(f1[:, 0], table.loc[table["status"] == "scored", "test_f1"].to_numpy())


def test_count_interval_of_indicator_latents():
    # Latents 0 and 1 are exact indicators of families A and C: F1 = 1 on every resample that
    # draws a member. Latent 2 fires on every third protein: never family-specific.
    dense = np.zeros((len(IDS), 3), dtype=np.float32)
    dense[range(10), 0] = 1.0
    dense[range(20, 30), 1] = 1.0
    dense[range(0, 40, 3), 2] = 1.0
    maxima = to_maxima(dense, IDS)
    table = family_f1_sweep(maxima, SPLIT, LABELS)
    assert summarise_family_f1(table)["n_family_specific"] == 2
    interval = family_count_interval(table, maxima, SPLIT, LABELS, 0.7, BootstrapSettings(500, 0, 0.95))
    assert (interval["n_family_specific_low"], interval["n_family_specific_high"]) == (2.0, 2.0)
    assert interval["share_family_specific_high"] == pytest.approx(2 / 3)
    assert interval["bootstrap_n_units"] == 20 and interval["bootstrap_unit"] == "protein"


def test_count_interval_brackets_a_borderline_count():
    rng = np.random.default_rng(13)
    ids, split, labels, dense = random_problem(rng)
    maxima = to_maxima(dense, ids)
    table = family_f1_sweep(maxima, split, labels)
    count = summarise_family_f1(table)["n_family_specific"]
    interval = family_count_interval(table, maxima, split, labels, 0.7, BootstrapSettings(400, 0))
    assert interval["n_family_specific_low"] <= count <= interval["n_family_specific_high"]
    assert interval["n_family_specific_low"] < interval["n_family_specific_high"]


def test_sixteen_thousand_latents_stay_fast():
    """16,384 latents over 5,000 test proteins, 1,000 resamples: under a second on one core here
    (the bound leaves room for a busy machine)."""
    rng = np.random.default_rng(14)
    n_proteins, n_latents, n_families = 10000, 16384, 500
    ids = [f"Q{i:05d}" for i in range(n_proteins)]
    split = pd.Series({p: "train" if i % 2 else "test" for i, p in enumerate(ids)})
    family_of = rng.integers(0, n_families, n_proteins)
    labels = labels_frame([(p, f"IPR{family_of[i]:06d}") for i, p in enumerate(ids)])
    # 50 proteins per latent, and 2% flat latents firing on 80% of proteins (they predict most).
    flat = rng.random(n_latents) < 0.02
    per_latent = np.where(flat, int(0.8 * n_proteins), 50)
    latent = np.repeat(np.arange(n_latents), per_latent)
    protein = np.concatenate([rng.choice(n_proteins, size, replace=False) for size in per_latent])
    value = np.where(flat[latent], rng.uniform(0.95, 1, latent.size), rng.lognormal(0, 1, latent.size))
    order = np.lexsort((latent, protein))
    maxima = specificity.MaxActivations(protein_ids=ids, protein=protein[order].astype(np.int64),
                                        latent=latent[order].astype(np.int32),
                                        value=value[order].astype(np.float32), n_latents=n_latents)
    table = family_f1_sweep(maxima, split, labels)
    assert (table["test_predicted"] > 2500).sum() > 200
    start = time.perf_counter()
    interval = family_count_interval(table, maxima, split, labels, 0.7, BootstrapSettings(1000, 0))
    assert time.perf_counter() - start < 20
    assert interval["bootstrap_n_units"] == 5000


def test_no_scored_latent_gives_a_zero_interval():
    dense = np.zeros((len(IDS), 2), dtype=np.float32)
    dense[30, 0] = 1.0  # fires on an unlabelled train protein only; latent 1 never fires
    maxima = to_maxima(dense, IDS)
    table = family_f1_sweep(maxima, SPLIT, LABELS)
    assert (table["status"] != "scored").all()
    interval = family_count_interval(table, maxima, SPLIT, LABELS, 0.7, BootstrapSettings(50, 0))
    assert (interval["n_family_specific_low"], interval["n_family_specific_high"]) == (0.0, 0.0)
