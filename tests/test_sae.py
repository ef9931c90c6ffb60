"""TopK SAE and its trainer against known answers."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from protsae.sae import SAEConfig, TopKSAE, geometric_median
from protsae.trainer import TrainConfig, default_lr, train_sae
from test_data import write_shard


def small_sae(**overrides) -> TopKSAE:
    cfg = dict(d_model=16, n_latents=64, k=4, seed=0)
    cfg.update(overrides)
    return TopKSAE(SAEConfig(**cfg))


def data(n: int = 128, d: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, d, generator=generator) + 5.0


def test_config_defaults():
    cfg = SAEConfig(d_model=1280)
    assert cfg.k_aux == 640
    assert cfg.auxk_coef == pytest.approx(1 / 32)
    with pytest.raises(ValueError, match="variant"):
        SAEConfig(d_model=8, variant="relu_l1")
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(2**12) == pytest.approx(4e-4)


def test_geometric_median_resists_outliers():
    generator = torch.Generator().manual_seed(0)
    centre = torch.tensor([1.0, -2.0, 3.0, 0.5, 0.0])
    inliers = centre + 0.5 * torch.randn(300, 5, generator=generator)
    outliers = centre + 100.0 + torch.randn(60, 5, generator=generator)
    points = torch.cat([inliers, outliers])
    median = geometric_median(points).float()
    assert (median - centre).norm() < 0.5
    assert (median - centre).norm() < 0.05 * (points.mean(0) - centre).norm()


def test_initialisation():
    sae = small_sae(normalize_input=True)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    torch.testing.assert_close(sae.W_enc, sae.W_dec)
    assert (sae.b_enc == 0).all()
    x = data()
    sae.initialize(x)
    assert float((x * sae.input_scale).pow(2).sum(-1).mean()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(sae.b_pre, geometric_median(x * sae.input_scale).float())


def test_sparse_decode_equals_dense():
    sae = small_sae(normalize_input=True)
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        sae.b_pre.add_(torch.randn(16))
        top_vals, top_idx = sae.encode(x)
        dense = torch.zeros(len(x), 64).scatter(1, top_idx, top_vals)
        expected = (dense @ sae.W_dec + sae.b_pre) / sae.input_scale
        torch.testing.assert_close(sae.decode(top_vals, top_idx), expected)
        assert torch.equal(sae(x).sae_out, sae.decode(top_vals, top_idx))


def test_forward_quantities():
    sae = small_sae()
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        out = sae(x)
    assert out.sae_out.shape == x.shape
    assert out.latent_acts.shape == out.latent_indices.shape == (len(x), 4)
    residual = x - out.sae_out
    assert float(out.mse) == pytest.approx(float(residual.pow(2).sum(-1).mean()), rel=1e-5)
    expected_fvu = residual.pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert float(out.fvu) == pytest.approx(float(expected_fvu), rel=1e-5)


def test_l0_at_most_k():
    sae = small_sae()
    x = data()
    sae.initialize(x)
    top_vals, top_idx = sae.encode(x)
    assert (top_vals >= 0).all()
    assert ((top_vals > 0).sum(-1) <= 4).all()
    assert all(len(set(row)) == 4 for row in top_idx.tolist())
    # The selected latents are the k largest pre-activations.
    pre_acts = sae.pre_acts(x)
    torch.testing.assert_close(pre_acts.gather(1, top_idx).sort(-1).values, pre_acts.topk(4).values.sort(-1).values)
    # With strongly negative encoder biases the ReLU zeroes kept latents: L0 < k.
    with torch.no_grad():
        sae.b_enc.fill_(-float(pre_acts.abs().max()))
    assert (sae.encode(x)[0] == 0).all()


def test_auxk_loss_only_with_dead_latents():
    sae = small_sae(k_aux=8)
    x = data()
    sae.initialize(x)
    no_dead = torch.zeros(64, dtype=torch.bool)
    assert sae(x).auxk_loss.item() == 0.0
    assert sae(x, dead_mask=no_dead).auxk_loss.item() == 0.0

    dead = no_dead.clone()
    dead[:20] = True
    out = sae(x, dead_mask=dead)
    assert out.auxk_loss.item() > 0.0
    # It trains only the dead latents' encoder rows.
    out.auxk_loss.backward()
    grad_rows = sae.W_enc.grad.abs().sum(1)
    assert (grad_rows[~dead] == 0).all()
    assert (grad_rows[dead] > 0).any()
    # Fewer dead latents than k_aux is fine.
    few = no_dead.clone()
    few[[3, 7]] = True
    assert torch.isfinite(sae(x, dead_mask=few).auxk_loss)


def test_decoder_rows_stay_unit_norm_and_gradient_is_projected():
    sae = small_sae()
    x = data()
    sae.initialize(x)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(5):
        out = sae(x)
        optimizer.zero_grad()
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
        assert parallel.abs().max() < 1e-6 * max(1.0, float(sae.W_dec.grad.abs().max()))
        optimizer.step()
        sae.set_decoder_norm_to_unit_norm()
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_gradient_projection_on_known_vectors():
    sae = small_sae(d_model=2, n_latents=2, k=1)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.6, 0.8]]))
    sae.W_dec.grad = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    sae.remove_gradient_parallel_to_decoder_directions()
    torch.testing.assert_close(sae.W_dec.grad, torch.tensor([[0.0, 4.0], [0.0, 0.0]]))


def test_input_normalisation_makes_the_model_scale_free():
    x = data()
    a, b = small_sae(normalize_input=True), small_sae(normalize_input=True)
    a.initialize(x)
    b.initialize(10.0 * x)
    out_a, out_b = a(x), b(10.0 * x)
    torch.testing.assert_close(out_b.sae_out, 10.0 * out_a.sae_out)
    torch.testing.assert_close(out_b.fvu, out_a.fvu)
    torch.testing.assert_close(out_b.mse, 100.0 * out_a.mse)


def test_save_load_round_trip(tmp_path):
    sae = small_sae(normalize_input=True, dead_tokens_threshold=1234)
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        sae.b_enc.normal_()
    sae.save(tmp_path / "sae", extra_config={"note": {"layer": 24}})
    config = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["dead_tokens_threshold"] == 1234 and config["normalize_input"] is True
    assert config["input_scale"] == pytest.approx(float(sae.input_scale))
    assert config["note"] == {"layer": 24}
    loaded = TopKSAE.load(tmp_path / "sae")
    assert loaded.cfg == sae.cfg
    dead = torch.arange(64) % 3 == 0
    for got, expected in zip(loaded(x, dead), sae(x, dead)):
        assert torch.equal(got, expected)


def write_planted_shard(path: Path, n_tokens: int, seed: int, d_model: int = 64, n_atoms: int = 256, k_true: int = 4):
    """Tokens that are sums of ``k_true`` of ``n_atoms`` random unit atoms with magnitudes in
    [0.5, 2], plus a constant offset and small noise; sequences of 100 tokens. Returns the atoms."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d_model))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    offset = 2.0 * rng.normal(size=d_model)
    chosen = np.argpartition(rng.random((n_tokens, n_atoms)), k_true, axis=1)[:, :k_true]
    magnitudes = rng.uniform(0.5, 2.0, size=(n_tokens, k_true))
    x = np.einsum("nk,nkd->nd", magnitudes, atoms[chosen]) + offset + 0.01 * rng.normal(size=(n_tokens, d_model))
    n_seqs = n_tokens // 100
    write_shard(path, [f"seq{i}" for i in range(n_seqs)], [100] * n_seqs, x.astype(np.float16), row_group_size=10_000)
    return atoms


@pytest.fixture
def one_thread():
    """Small matmuls on a shared 2-core machine run faster, and steadier, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_recovers_planted_dictionary(tmp_path, one_thread):
    atoms = write_planted_shard(tmp_path / "planted.parquet", n_tokens=300_000, seed=0)
    sae_cfg = SAEConfig(d_model=64, n_latents=512, k=8, k_aux=32, dead_tokens_threshold=20_000, seed=0)
    train_cfg = TrainConfig(
        n_tokens=250_000, batch_size=512, lr=3e-3, holdout_fraction=0.05, eval_tokens=10_000,
        shuffle_buffer=8192, log_every=50, device="cpu", seed=0,
    )
    metrics = train_sae([tmp_path / "planted.parquet"], sae_cfg, train_cfg, tmp_path / "sae", progress=False)
    sae = TopKSAE.load(tmp_path / "sae")
    best_cosine = (atoms @ sae.W_dec.detach().double().numpy().T).max(axis=1)
    recovered = float((best_cosine > 0.9).mean())
    assert recovered >= 0.9, f"only {recovered:.0%} of planted atoms recovered"
    assert metrics["heldout_fvu"] < 0.15
    assert metrics["heldout_l0"] <= 8
    assert metrics["heldout_tokens"] == 10_000


def test_training_is_deterministic_and_writes_its_outputs(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6000, 16)) @ rng.normal(size=(16, 16)) + 1.0).astype(np.float16)
    write_shard(tmp_path / "a.parquet", [f"a{i}" for i in range(60)], [50] * 60, x[:3000])
    write_shard(tmp_path / "b.parquet", [f"b{i}" for i in range(60)], [50] * 60, x[3000:])
    shards = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    sae_cfg = SAEConfig(d_model=16, n_latents=64, k=4, dead_tokens_threshold=1000, normalize_input=True)
    train_cfg = TrainConfig(
        n_tokens=30 * 64, batch_size=64, holdout_fraction=0.1, eval_tokens=500, shuffle_buffer=512,
        log_every=10, device="cpu", seed=3,
    )
    runs = [tmp_path / "run1", tmp_path / "run2"]
    metrics = [train_sae(shards, sae_cfg, train_cfg, run, progress=False, title="layer 0, k=4") for run in runs]
    weights = [load_file(str(run / "sae.safetensors")) for run in runs]
    assert weights[0].keys() == {"W_enc", "b_enc", "W_dec", "b_pre", "input_scale"}
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert metrics[0]["heldout_fvu"] == metrics[1]["heldout_fvu"]

    run = runs[0]
    assert {p.name for p in run.iterdir()} == {
        "sae.safetensors", "config.json", "metrics.json", "history.csv", "loss_curve.png"
    }
    config = json.loads((run / "config.json").read_text())
    assert config["n_latents"] == 64 and config["train"]["n_tokens"] == 30 * 64
    assert config["data"] == {"shard_paths": [str(p) for p in shards], "tokens_seen": 30 * 64}
    written = json.loads((run / "metrics.json").read_text())
    assert written == metrics[0]
    assert written["tokens_seen"] == 30 * 64 and written["steps"] == 30
    assert 0 < written["heldout_tokens"] <= 500
    assert 0.0 <= written["heldout_l0"] <= 4
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    # A short run records every step (the loss curve gets ~200 points whatever the length).
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    # Warm-up, then linear decay that reaches 0 with the last step.
    assert float(rows[9]["lr"]) == pytest.approx(default_lr(64)) and float(rows[-1]["lr"]) == 0.0
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A different seed trains a different SAE.
    other = dataclasses.replace(train_cfg, seed=4)
    train_sae(shards, sae_cfg, other, tmp_path / "run3", progress=False)
    assert not torch.equal(load_file(str(tmp_path / "run3" / "sae.safetensors"))["W_enc"], weights[0]["W_enc"])
