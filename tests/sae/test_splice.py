"""Splicing an SAE into the LM: identity, error term, ablation, masking, untouched specials."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from protsae.activations.stream import is_heldout
from protsae.sae.config import SAEConfig
from protsae.sae.splice import (
    heldout_sequences,
    mask_positions,
    residue_edit,
    splice_metrics,
)
from protsae.sae.variants import TopKSAE
from protsae.sequences.fasta import FastaRecord, write_fasta

RESIDUES = list("ACDEFGHIKLMNPQRSTVWY")


def random_sequences(n, seed=0, low=8, high=60):
    rng = np.random.default_rng(seed)
    return [(f"seq{i}", "".join(rng.choice(RESIDUES, rng.integers(low, high)))) for i in range(n)]


class IdentitySAE:
    """Stand-in whose reconstruction is its input, exactly."""

    def encode(self, x):
        return x, torch.arange(x.shape[1]).expand(x.shape[0], -1)

    def decode(self, vals, idx):
        return vals


def plus_minus_identity_sae(d_model):
    """A TopKSAE that reconstructs exactly: latents relu(x) and relu(-x), decoder rows +-e_i."""
    sae = TopKSAE(SAEConfig(d_model=d_model, n_latents=2 * d_model, k=2 * d_model))
    eye = torch.eye(d_model)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_pre.zero_()
    return sae


def random_sae(d_model, seed=0, n_latents=128, k=8):
    return TopKSAE(SAEConfig(d_model=d_model, n_latents=n_latents, k=k, seed=seed))


@pytest.fixture(scope="module")
def unirep():
    from protsae.models.unirep import UniRep

    return UniRep.from_weights(64)


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(12)


@pytest.mark.parametrize("which", ["esm", "unirep"])
@pytest.mark.parametrize("make_sae", [lambda d: IdentitySAE(), plus_minus_identity_sae], ids=["stub", "topk"])
def test_an_exact_reconstruction_changes_nothing(which, make_sae, tiny_model, unirep, sequences):
    model = tiny_model if which == "esm" else unirep
    result = splice_metrics(model, make_sae(model.d_model), 2, sequences, max_tokens=300)
    assert result["delta_ce"] == pytest.approx(0, abs=1e-5)
    assert result["delta_ce_with_error"] == pytest.approx(0, abs=1e-5)
    assert result["loss_recovered"] == pytest.approx(1, abs=1e-5)
    assert result["fvu"] == pytest.approx(0, abs=1e-6)
    assert result["ce_zero"] > result["ce_clean"]
    assert result["n_sequences"] == len(sequences)
    n_residues = sum(len(s) for _, s in sequences)
    assert result["n_residues"] == n_residues
    if which == "unirep":
        assert result["n_predicted_tokens"] == n_residues
        assert result["mask_prob"] is None
    else:
        assert result["n_predicted_tokens"] == sum(max(1, round(0.15 * len(s))) for _, s in sequences)


@pytest.mark.parametrize("which", ["esm", "unirep"])
def test_a_random_sae_costs_loss_and_its_error_term_restores_it(which, tiny_model, unirep, sequences):
    model = tiny_model if which == "esm" else unirep
    sae = random_sae(model.d_model)
    result = splice_metrics(model, sae, 2, sequences, max_tokens=300)
    assert result["delta_ce"] > 0
    assert abs(result["delta_ce_with_error"]) < 1e-5
    assert result["ce_zero"] > result["ce_clean"]
    assert 0 < result["l0"] <= sae.cfg.k
    assert result["fvu"] > 0.01
    expected = (result["ce_zero"] - result["ce_sae"]) / (result["ce_zero"] - result["ce_clean"])
    assert result["loss_recovered"] == pytest.approx(expected)


def test_masked_positions_are_seeded_per_sequence():
    a = mask_positions("P1", 200, 0.15, seed=0)
    assert len(a) == 30 and len(set(a.tolist())) == 30 and (np.diff(a) > 0).all() and a.max() < 200
    assert (a == mask_positions("P1", 200, 0.15, seed=0)).all()
    assert not np.array_equal(a, mask_positions("P1", 200, 0.15, seed=1))
    assert not np.array_equal(a, mask_positions("P2", 200, 0.15, seed=0))
    assert len(mask_positions("short", 3, 0.15, seed=0)) == 1  # at least one per sequence


def test_results_do_not_depend_on_batch_composition(tiny_model, sequences):
    sae = random_sae(tiny_model.d_model)
    one_per_batch = splice_metrics(tiny_model, sae, 1, sequences, max_tokens=1)
    together = splice_metrics(tiny_model, sae, 1, sequences, max_tokens=10_000)
    subset = splice_metrics(tiny_model, sae, 1, sequences[:5], max_tokens=10_000)
    for key in ("ce_clean", "ce_sae", "ce_zero", "fvu", "l0", "n_predicted_tokens"):
        assert one_per_batch[key] == pytest.approx(together[key], rel=1e-5), key
    assert subset["n_predicted_tokens"] == sum(len(mask_positions(i, len(s), 0.15, 0)) for i, s in sequences[:5])


@pytest.mark.parametrize("which", ["esm", "unirep"])
@pytest.mark.parametrize("condition", ["sae", "sae_plus_error", "zero"])
def test_the_edit_leaves_special_and_padding_positions_alone(which, condition, tiny_model, unirep, sequences):
    model = tiny_model if which == "esm" else unirep
    layer = 2
    sae = random_sae(model.d_model)
    batch = model.tokenize([s for _, s in sequences[:4]])
    clean = model.hidden_states(batch, [layer])[layer]
    with model.replace_layer_output(layer, residue_edit(condition, sae, batch.residue_mask)):
        edited = model.hidden_states(batch, [layer])[layer]
    outside = ~batch.residue_mask
    assert outside.sum() > 4  # specials and padding are both present
    assert torch.equal(edited[outside], clean[outside])
    x = clean[batch.residue_mask]
    expected = {"sae": lambda: sae.decode(*sae.encode(x)), "sae_plus_error": lambda: x,
                "zero": lambda: torch.zeros_like(x)}[condition]()
    torch.testing.assert_close(edited[batch.residue_mask], expected, atol=1e-5, rtol=1e-5)


def test_heldout_sequences_follow_the_sae_split(tmp_path):
    pairs = random_sequences(300, seed=3, low=5, high=80)
    fasta = tmp_path / "eval.fasta"
    write_fasta([FastaRecord(i, "", s, 0) for i, s in pairs], fasta)
    held = is_heldout(pa.array([i for i, _ in pairs]), 0.2, 7)
    expected = [p for p, h in zip(pairs, held) if h and len(p[1]) <= 50]
    assert 10 < len(expected) < 100
    assert heldout_sequences(fasta, 0.2, 7, max_length=50) == expected
    assert heldout_sequences(fasta, 0.2, 7, n_max=10, max_length=50, chunk=16) == expected[:10]
    assert heldout_sequences(pairs, 0.2, 7, n_max=10, max_length=50) == expected[:10]
