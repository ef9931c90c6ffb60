"""SAEBench's core metrics (protsae.sae.quality) against hand-computed answers."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import write_shard

from protsae.sae.config import SAEConfig
from protsae.sae.quality import (
    DENSITY_LOG10_EDGES,
    RECONSTRUCTION_METRICS,
    density_metrics,
    dictionary_metrics,
    encoder_decoder_cosine,
    kl_recovered,
    max_cosine_to_others,
    reconstruction_metrics,
    relative_reconstruction_bias,
    token_cosine,
    token_explained_variance,
    token_kl_divergence,
    token_l2_ratio,
)
from protsae.sae.splice import splice_metrics
from protsae.sae.train import TrainConfig, evaluate, train_sae
from protsae.sae.variants import TopKSAE, make_sae


def scaled_identity_sae(d_model: int, scale: float = 1.0) -> TopKSAE:
    """A TopK SAE whose latents are relu(x) and relu(-x) and whose reconstruction is ``scale * x``
    (decoder rows +-scale e_i), all latents kept."""
    sae = TopKSAE(SAEConfig(d_model=d_model, n_latents=2 * d_model, k=2 * d_model, normalize_input=False))
    eye = torch.eye(d_model)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(scale * torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_pre.zero_()
    return sae


def planted_tokens() -> torch.Tensor:
    """1000 tokens, d_model 4: dimension 0 is +1 on the first half and -1 on the rest; dimension
    1 is 2.0 on 50 tokens (5%); dimension 2 is 3.0 on 5 tokens (0.5%); dimension 3 is always 0.
    With `scaled_identity_sae`, latent j (+e_j) fires where x_j > 0, latent 4 + j where x_j < 0:
    frequencies 0.5, 0.05, 0.005, 0 and 0.5, 0, 0, 0."""
    x = torch.zeros(1000, 4)
    x[:500, 0], x[500:, 0] = 1.0, -1.0
    x[torch.arange(0, 1000, 20), 1] = 2.0
    x[torch.arange(3, 1000, 200), 2] = 3.0
    return x


# Per-token reconstruction quantities.

def test_a_perfect_reconstruction_scores_one_everywhere():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) + 2.0
    mean = x.mean(0)
    assert torch.allclose(token_explained_variance(x, x, mean), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(token_cosine(x, x), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(token_l2_ratio(x, x), torch.ones(50, dtype=torch.float64))
    assert relative_reconstruction_bias(x, x) == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_a_scaled_reconstruction_has_that_l2_ratio_and_bias(scale):
    # The bias is the gamma minimising ||x_hat / gamma - x||^2: x_hat = 0.5 x gives 0.5 (shrinkage).
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    x_hat = scale * x
    assert torch.allclose(token_l2_ratio(x, x_hat), torch.full((50,), scale, dtype=torch.float64))
    assert relative_reconstruction_bias(x, x_hat) == pytest.approx(scale)
    assert torch.allclose(token_cosine(x, x_hat), torch.ones(50, dtype=torch.float64))


def test_legacy_explained_variance_is_per_token_not_one_minus_fvu():
    # Tokens 4, 0, -1 (mean 1, squared distances 9, 1, 4); only the middle one is reconstructed
    # wrongly (as 1, squared error 1): per-token scores 1, 0, 1, so 2/3; 1 - FVU would be 13/14.
    x = torch.tensor([[4.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    x_hat = torch.tensor([[4.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    per_token = token_explained_variance(x, x_hat, x.mean(0))
    assert per_token.tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert float(per_token.mean()) == pytest.approx(2 / 3)


def test_cosine_and_l2_ratio_of_hand_built_tokens():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    x_hat = torch.tensor([[0.0, 3.0], [-2.0, 0.0], [0.0, 0.5]])
    assert token_cosine(x, x_hat).tolist() == pytest.approx([0.0, -1.0, 0.0])
    # The zero input divides by 1 (SAEBench's guard), so its ratio is ||x_hat|| itself.
    assert token_l2_ratio(x, x_hat).tolist() == pytest.approx([3.0, 2.0, 0.5])


# KL divergence and KL recovered.

def test_kl_divergence_of_known_distributions():
    clean = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64).log()
    other = torch.tensor([[0.25, 0.75], [0.9, 0.1]], dtype=torch.float64).log() + 7.0  # logits: a shift changes nothing
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert token_kl_divergence(clean, other).tolist() == pytest.approx([expected, 0.0], abs=1e-12)
    # A zero clean probability contributes nothing (no NaN from 0 * log 0).
    assert float(token_kl_divergence(torch.tensor([0.0, -math.inf]), torch.tensor([0.0, 0.0]))) == pytest.approx(
        math.log(2)
    )


def test_kl_recovered_is_one_for_clean_output_and_zero_for_ablated_output():
    logits = torch.randn(30, 33, generator=torch.Generator().manual_seed(2))
    ablated = torch.randn(30, 33, generator=torch.Generator().manual_seed(3))
    kl_zero = float(token_kl_divergence(logits, ablated).mean())
    assert kl_zero > 0
    assert kl_recovered(float(token_kl_divergence(logits, logits).mean()), kl_zero) == pytest.approx(1.0)
    assert kl_recovered(kl_zero, kl_zero) == 0.0
    assert kl_recovered(0.25 * kl_zero, kl_zero) == pytest.approx(0.75)
    assert math.isnan(kl_recovered(0.0, 0.0))


class ZeroSAE:
    """Stand-in that reconstructs every token as 0: splicing it is zero-ablation."""

    def __init__(self, d_model: int):
        self.d_model = d_model

    def encode(self, x):
        return torch.zeros(len(x), 1), torch.zeros(len(x), 1, dtype=torch.int64)

    def decode(self, vals, idx):
        return torch.zeros(len(vals), self.d_model)


def test_the_splice_reports_kl_at_the_scored_positions(tiny_model):
    rng = np.random.default_rng(0)
    sequences = [(f"s{i}", "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 30))) for i in range(6)]
    exact = splice_metrics(tiny_model, scaled_identity_sae(tiny_model.d_model), 2, sequences, max_tokens=300)
    assert exact["kl_sae"] == pytest.approx(0.0, abs=1e-6)
    assert exact["kl_sae_plus_error"] == pytest.approx(0.0, abs=1e-6)
    assert exact["kl_zero"] > 1e-3
    assert exact["kl_recovered"] == pytest.approx(1.0, abs=1e-4)
    ablated = splice_metrics(tiny_model, ZeroSAE(tiny_model.d_model), 2, sequences, max_tokens=300)
    assert ablated["kl_sae"] == pytest.approx(ablated["kl_zero"], rel=1e-6)
    assert ablated["kl_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert ablated["loss_recovered"] == pytest.approx(0.0, abs=1e-6)


def test_the_splice_builds_no_autograd_graph(tiny_model):
    """The SAE's parameters require grad (an nn.Module's do), but the splice records no graph:
    with one, the running sums of the reconstruction stats chained every batch's activations
    together and held them all until the end."""
    sae = scaled_identity_sae(tiny_model.d_model)
    assert all(p.requires_grad for p in sae.parameters())
    seen = []
    decode = sae.decode

    def recording_decode(*args, **kwargs):
        x_hat = decode(*args, **kwargs)
        seen.append(x_hat.requires_grad)
        return x_hat

    sae.decode = recording_decode
    sequences = [(f"s{i}", "ACDEFGHIKLMNPQRSTVWY"[i:] + "MK" * i) for i in range(6)]
    metrics = splice_metrics(tiny_model, sae, 2, sequences, max_tokens=60)
    assert len(seen) > 1 and not any(seen)
    assert metrics["fvu"] == pytest.approx(0.0, abs=1e-6)

# Latent density.

def test_planted_firing_counts_give_the_right_shares_and_histogram():
    counts = torch.tensor([0, 0, 5, 20, 150, 1000])  # over 1000 tokens: 0, 0, 0.5%, 2%, 15%, 100%
    result = density_metrics(counts, 1000)
    assert result["alive_share"] == pytest.approx(4 / 6)
    assert result["firing_above_1pct_share"] == pytest.approx(3 / 6)
    assert result["firing_above_10pct_share"] == pytest.approx(2 / 6)
    histogram = result["density_histogram"]
    assert histogram["never_fired"] == 2 and sum(histogram["counts"]) == 4
    assert histogram["log10_edges"] == list(DENSITY_LOG10_EDGES)
    assert len(histogram["counts"]) == len(DENSITY_LOG10_EDGES) - 1
    edges = np.asarray(DENSITY_LOG10_EDGES)
    expected_bins = [int(np.searchsorted(edges, math.log10(f), side="right")) - 1 for f in (0.005, 0.02, 0.15)]
    expected_bins.append(len(edges) - 2)  # frequency 1 (log10 0) falls in the last bin
    assert [i for i, c in enumerate(histogram["counts"]) for _ in range(c)] == sorted(expected_bins)
    # Exactly 1% is not above 1%.
    assert density_metrics(torch.tensor([10]), 1000)["firing_above_1pct_share"] == 0.0


def test_reconstruction_metrics_of_an_exact_sae_on_planted_tokens():
    result = reconstruction_metrics(scaled_identity_sae(4), planted_tokens(), batch_size=128)
    for key in ("explained_variance", "cosine", "l2_ratio", "relative_reconstruction_bias"):
        assert result[key] == pytest.approx(1.0), key
    assert result["fvu"] == pytest.approx(0.0)
    assert result["n_tokens"] == 1000
    # Latents 0 and 4 fire on half the tokens, 1 on 5%, 2 on 0.5%; the other four never.
    assert result["alive_share"] == pytest.approx(4 / 8)
    assert result["firing_above_1pct_share"] == pytest.approx(3 / 8)
    assert result["firing_above_10pct_share"] == pytest.approx(2 / 8)
    assert result["density_histogram"]["never_fired"] == 4
    assert result["l0"] == pytest.approx(1 + 0.05 + 0.005)


def test_reconstruction_metrics_of_a_shrinking_sae():
    x = planted_tokens()
    result = reconstruction_metrics(scaled_identity_sae(4, scale=0.5), x)
    assert result["l2_ratio"] == pytest.approx(0.5)
    assert result["relative_reconstruction_bias"] == pytest.approx(0.5)
    assert result["cosine"] == pytest.approx(1.0)
    expected = token_explained_variance(x, 0.5 * x, x.mean(0)).mean()
    assert result["explained_variance_legacy"] == pytest.approx(float(expected))
    assert result["explained_variance_legacy"] < 1 - 1e-3
    assert result["explained_variance"] == pytest.approx(1 - result["fvu"])


def test_reconstruction_metrics_take_a_stand_in_without_parameters():
    class Identity:
        cfg = SimpleNamespace(n_latents=4)

        def encode(self, x):
            return x.relu(), torch.arange(4).expand(len(x), -1)

        def decode(self, vals, idx):
            return vals

    x = planted_tokens().abs()
    result = reconstruction_metrics(Identity(), x)
    assert result["cosine"] == pytest.approx(1.0) and result["fvu"] == pytest.approx(0.0)
    assert result["alive_share"] == pytest.approx(3 / 4)


def variant_sae(variant: str, **overrides) -> TopKSAE:
    cfg = {"d_model": 16, "n_latents": 64, "k": 4, "variant": variant, "normalize_input": False, "seed": 1,
           "matryoshka_prefixes": (0.25, 1.0)}
    cfg.update(overrides)
    return make_sae(SAEConfig(**cfg))


@pytest.mark.parametrize("variant,overrides", [
    ("topk", {}), ("topk", {"standardize_tokens": True}), ("batchtopk", {}), ("matryoshka", {}),
    ("relu_l1", {}),
])
def test_the_trainers_evaluation_equals_reconstruction_metrics_for_every_variant(variant, overrides):
    x = 2.0 * torch.randn(700, 16, generator=torch.Generator().manual_seed(4)) + 1.0
    sae = variant_sae(variant, **overrides)
    sae.initialize(x)
    if variant in ("batchtopk", "matryoshka"):
        # A threshold that drops some of the top-k latents, so that BatchTopK's inference matters.
        with torch.no_grad():
            sae.threshold.fill_(float(sae.pre_acts(x).topk(4, dim=-1).values[:, -1].median()))
    evaluated = evaluate(sae, x, batch_size=256)
    direct = reconstruction_metrics(sae, x, batch_size=100)
    for key in RECONSTRUCTION_METRICS:
        if key == "density_histogram":
            assert evaluated[key] == direct[key]
        else:
            assert evaluated[key] == pytest.approx(direct[key], rel=1e-5, abs=1e-7), key
    assert evaluated["fvu_stored"] == pytest.approx(direct["fvu"], rel=1e-5)
    assert -1.0 <= direct["cosine"] <= 1.0 and direct["l2_ratio"] > 0
    assert 0 < direct["alive_share"] <= 1


# Dictionary geometry.

def test_duplicate_decoder_rows_have_max_cosine_one():
    e = torch.eye(3)
    decoder = torch.stack([e[0], e[0], e[1], (e[1] + e[2]) / math.sqrt(2)])
    expected = [1.0, 1.0, 1 / math.sqrt(2), 1 / math.sqrt(2)]
    for chunk in (1, 3, 1024):
        assert max_cosine_to_others(decoder, chunk=chunk).tolist() == pytest.approx(expected)
    # Cosine, not dot product: scaling a row changes nothing.
    assert max_cosine_to_others(decoder * torch.tensor([[3.0], [1.0], [0.2], [1.0]])).tolist() == pytest.approx(
        expected
    )
    encoder = torch.stack([e[0], e[0], -e[1], e[2]])
    assert encoder_decoder_cosine(encoder, decoder).tolist() == pytest.approx([1.0, 1.0, -1.0, 1 / math.sqrt(2)])

    sae = SimpleNamespace(W_enc=encoder, W_dec=decoder)
    result = dictionary_metrics(sae)
    assert result["decoder_max_cosine_mean"] == pytest.approx(np.mean(expected))
    assert result["decoder_max_cosine_median"] == pytest.approx(np.median(expected))
    assert result["decoder_duplicate_share"] == pytest.approx(0.5)
    assert result["encoder_decoder_cosine_mean"] == pytest.approx((1 + 1 - 1 + 1 / math.sqrt(2)) / 4)
    assert result["encoder_decoder_cosine_median"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)


def test_max_cosine_matches_the_full_matrix():
    rows = torch.randn(37, 5, generator=torch.Generator().manual_seed(5))
    unit = rows / rows.norm(dim=1, keepdim=True)
    full = unit @ unit.T
    full.fill_diagonal_(-math.inf)
    torch.testing.assert_close(max_cosine_to_others(rows, chunk=8), full.max(dim=1).values)


def test_a_freshly_initialised_sae_is_tied():
    # The trainer ties the encoder to the decoder at initialisation (Gao et al.).
    result = dictionary_metrics(variant_sae("topk"))
    assert result["encoder_decoder_cosine_mean"] == pytest.approx(1.0)
    assert result["decoder_duplicate_share"] == 0.0


# The trainer's metrics.json.

def test_training_writes_the_saebench_metrics(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4000, 16)) @ rng.normal(size=(16, 16)) + 1.0).astype(np.float16)
    write_shard(tmp_path / "a.parquet", [f"a{i}" for i in range(80)], [50] * 80, x)
    sae_cfg = SAEConfig(d_model=16, n_latents=64, k=4, dead_tokens_threshold=1000)
    train_cfg = TrainConfig(n_tokens=20 * 64, batch_size=64, holdout_fraction=0.2, eval_tokens=500,
                            shuffle_buffer=512, log_every=10, device="cpu", seed=0)
    metrics = train_sae([tmp_path / "a.parquet"], sae_cfg, train_cfg, tmp_path / "sae", progress=False)
    written = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert written == metrics
    for key in RECONSTRUCTION_METRICS:
        assert written[f"heldout_{key}"] is not None, key
    assert written["heldout_alive_share"] == pytest.approx(1 - written["heldout_never_fired_share"])
    assert sum(written["heldout_density_histogram"]["counts"]) == round(64 * written["heldout_alive_share"])
    assert 0 < written["heldout_cosine"] <= 1
    assert written["heldout_explained_variance"] <= 1
    for key in ("decoder_max_cosine_mean", "decoder_duplicate_share", "encoder_decoder_cosine_mean",
                "encoder_decoder_cosine_median", "decoder_max_cosine_median"):
        assert -1 <= written[key] <= 1, key
