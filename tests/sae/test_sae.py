"""TopK SAE and its trainer against known answers."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_shard
from safetensors.torch import load_file, save_file

from protsae.sae.config import SAEConfig
from protsae.sae.interprot import interprot_name_info
from protsae.sae.io import load_sae
from protsae.sae.kernels import SelectiveEncoder, geometric_median
from protsae.sae.train import TrainConfig, default_lr, train_sae
from protsae.sae.variants import TopKSAE, make_sae, sae_class


def small_sae(**overrides) -> TopKSAE:
    # Unscaled inputs, so that the known answers below can ignore the input scale.
    cfg = {"d_model": 16, "n_latents": 64, "k": 4, "seed": 0, "normalize_input": False}
    cfg.update(overrides)
    return make_sae(SAEConfig(**cfg))


def data(n: int = 128, d: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, d, generator=generator) + 5.0


def test_config_defaults():
    cfg = SAEConfig(d_model=1280)
    assert cfg.k_aux == 640
    assert cfg.auxk_coef == pytest.approx(1 / 32)
    with pytest.raises(ValueError, match="variant"):
        SAEConfig(d_model=8, variant="gated")
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


def test_variant_settings_are_validated():
    assert SAEConfig(d_model=8, n_latents=16, k=2, variant="batchtopk").k_store == 2
    assert SAEConfig(d_model=8, n_latents=16, k=2, variant="batchtopk", k_store=4).k_store == 4
    with pytest.raises(ValueError, match="k_store"):
        SAEConfig(d_model=8, n_latents=16, k=2, k_store=4)
    with pytest.raises(ValueError, match="k_store"):
        SAEConfig(d_model=8, n_latents=16, k=2, variant="matryoshka", matryoshka_selection="topk", k_store=4)
    assert SAEConfig(d_model=8, n_latents=64, k=2, variant="matryoshka").prefix_sizes == [4, 8, 16, 32, 64]
    for prefixes in [(0.5, 0.25, 1.0), (0.25, 0.5), (0.001, 1.0)]:
        with pytest.raises(ValueError, match="matryoshka_prefixes"):
            SAEConfig(d_model=8, n_latents=64, k=2, variant="matryoshka", matryoshka_prefixes=prefixes)
    with pytest.raises(ValueError, match="exclude"):
        SAEConfig(d_model=8, standardize_tokens=True, normalize_input=True)


def test_selective_encoder_values_and_gradients_equal_autograd():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=generator, requires_grad=True)
    weight = torch.randn(7, 5, generator=generator, requires_grad=True)
    bias = torch.randn(7, generator=generator, requires_grad=True)
    # A per-token selection and a ragged one (token 2 absent, entries shared with the first).
    per_token = torch.tensor([[0, 3, 5], [1, 2, 6], [0, 1, 2], [4, 5, 6], [6, 0, 3], [2, 4, 1]])
    per_token = per_token + 7 * torch.arange(6)[:, None]
    ragged = torch.tensor([0 * 7 + 3, 1 * 7 + 0, 1 * 7 + 6, 3 * 7 + 4, 5 * 7 + 1, 5 * 7 + 2, 5 * 7 + 5])
    values = SelectiveEncoder.apply(x, weight, bias, lambda pre: (per_token, ragged), torch.float32)
    grads = (torch.randn(6, 3, generator=generator), torch.randn(7, generator=generator))
    sum(v.mul(g).sum() for v, g in zip(values, grads)).backward()
    got = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    pre_acts = (x @ weight.T + bias).view(-1)
    expected = (pre_acts[per_token], pre_acts[ragged])
    for value, reference in zip(values, expected):
        torch.testing.assert_close(value, reference)
    sum(v.mul(g).sum() for v, g in zip(expected, grads)).backward()
    for grad, t in zip(got, (x, weight, bias)):
        torch.testing.assert_close(grad, t.grad)
    # In bfloat16 the values follow the bfloat16 matmul.
    bf16 = SelectiveEncoder.apply(x, weight, bias, lambda pre: (per_token,), torch.bfloat16)[0]
    torch.testing.assert_close(bf16, expected[0], atol=0.1, rtol=0.02)


def dense_reference_loss(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor, auxk_coef: float) -> torch.Tensor:
    """The training loss written densely: full pre-activations, a dense z, dense decoding."""
    cfg = sae.cfg
    pre_acts = F.linear(x * sae.input_scale - sae.b_pre, sae.W_enc, sae.b_enc)
    if cfg.batch_selection:
        flat = pre_acts.relu().view(-1)
        top = flat.topk(len(x) * cfg.k).indices
        z = torch.zeros_like(flat).index_put((top,), flat[top]).view_as(pre_acts)
    else:
        top_vals, top_idx = pre_acts.topk(cfg.k)
        z = torch.zeros_like(pre_acts).scatter(1, top_idx, top_vals.relu())

    def fvu(target, estimate):
        return (target - estimate).pow(2).sum() / (target - target.mean(0)).pow(2).sum()

    sizes = cfg.prefix_sizes if cfg.variant == "matryoshka" else [cfg.n_latents]
    loss = torch.stack([
        fvu(x, (z[:, :m] @ sae.W_dec[:m] + sae.b_pre) / sae.input_scale) for m in sizes
    ]).mean()
    x_hat = (z @ sae.W_dec + sae.b_pre) / sae.input_scale
    aux_vals, aux_idx = pre_acts.masked_fill(~dead, float("-inf")).topk(cfg.k_aux)
    z_aux = torch.zeros_like(pre_acts).scatter(1, aux_idx, aux_vals.relu())
    residual = (x - x_hat.detach()) * sae.input_scale
    return loss + auxk_coef * fvu(residual, z_aux @ sae.W_dec)


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka"])
def test_sparse_training_gradients_equal_dense_autograd(variant):
    sae = small_sae(variant=variant, k_aux=8, normalize_input=True, matryoshka_prefixes=(0.25, 0.5, 1.0))
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_pre.add_(1.0)
    dead = torch.arange(64) % 3 == 0
    out = sae(x, dead_mask=dead)
    (out.loss + 0.5 * out.auxk_loss).backward()
    got = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    reference = dense_reference_loss(sae, x, dead, 0.5)
    torch.testing.assert_close(out.loss + 0.5 * out.auxk_loss, reference)
    reference.backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(got[name], p.grad, atol=1e-4 * float(p.grad.abs().max()), rtol=1e-4, msg=name)


def test_batchtopk_keeps_the_batch_top_exactly_and_thresholds_at_inference():
    sae = small_sae(variant="batchtopk", k_store=6)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        # Tokens of very different scales: many would use more than the 2k candidates per token.
        pre_acts = torch.randn(50, 64, generator=generator) + 3 * torch.randn(50, 1, generator=generator)
        kept = sae._select_training(pre_acts, {})
        expected = pre_acts.view(-1).topk(50 * 4).indices
        assert torch.equal(kept, expected[pre_acts.view(-1)[expected] > 0].sort().values)

    x = data()
    sae.initialize(x)
    first = sae(x)
    assert float(first.l0) == 4.0
    first_min = float(first.latent_acts.detach()[first.latent_acts > 0].min())
    assert float(sae.threshold) == pytest.approx(first_min)
    second = sae(2.0 * x)
    second_min = float(second.latent_acts.detach()[second.latent_acts > 0].min())
    decay = sae.cfg.threshold_decay
    mean = (decay * (1 - decay) * first_min + (1 - decay) * second_min) / (1 - decay**2)
    assert float(sae.threshold) == pytest.approx(mean) and int(sae.threshold_updates) == 2

    vals, idx = sae.encode(x)
    assert vals.shape == idx.shape == (len(x), 6)
    assert ((vals == 0) | (vals >= sae.threshold)).all()
    top_vals = sae.pre_acts(x).topk(6).values.relu()
    torch.testing.assert_close(vals.sort(-1).values, (top_vals * (top_vals >= sae.threshold)).sort(-1).values)
    sae.eval()
    torch.testing.assert_close(sae(x).sae_out, sae.decode(vals, idx))


def test_relu_l1_forward_penalty_and_folding():
    sae = small_sae(variant="relu_l1", l1_coef=3.0)
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1, generator=torch.Generator().manual_seed(0)) + 0.5)
        sae.b_enc.fill_(-0.5)
    out = sae(x)
    z = sae.pre_acts(x).relu()
    x_hat = z @ sae.W_dec + sae.b_pre
    torch.testing.assert_close(out.sae_out, x_hat)
    centred = x - x.mean(0)
    fvu = (x - x_hat).pow(2).sum() / centred.pow(2).sum()
    penalty = (z * sae.W_dec.norm(dim=1)).sum(-1).mean() / (centred.pow(2).sum(-1).mean() * 16).sqrt()
    torch.testing.assert_close(out.loss, fvu + 3.0 * penalty)
    assert float(out.l0) == pytest.approx(float((z > 0).sum(-1).float().mean()))
    assert 4 < float(out.l0) < 64
    # encode keeps each token's 4 largest latents; decoding them alone is an approximation.
    vals, idx = sae.encode(x)
    torch.testing.assert_close(vals.sort(-1).values, z.topk(4).values.sort(-1).values)
    truncated = torch.zeros_like(z).scatter(1, idx, vals) @ sae.W_dec + sae.b_pre
    torch.testing.assert_close(sae.decode(vals, idx), truncated)
    # Folding the decoder norms into the encoder changes nothing but the scale of the latents.
    before = out.sae_out.detach()
    sae.fold_decoder_norms()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    torch.testing.assert_close(sae(x).sae_out, before)


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka", "relu_l1"])
def test_every_variant_saves_and_loads(tmp_path, variant):
    sae = small_sae(variant=variant, normalize_input=True, matryoshka_prefixes=(0.25, 1.0))
    x = data()
    sae.initialize(x)
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(0))
    sae(x)  # a training-mode pass sets BatchTopK's threshold
    sae.save(tmp_path / "sae")
    config = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert config["variant"] == variant
    for path in (tmp_path / "sae", tmp_path / "sae" / "sae.safetensors"):
        loaded = load_sae(path)
        assert type(loaded) is type(sae) is sae_class(variant)
        assert loaded.cfg == sae.cfg
        for name, tensor in sae.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
    if variant in ("batchtopk", "matryoshka"):
        assert float(loaded.threshold) > 0 and config["threshold"] == float(sae.threshold)
    loaded.eval()
    sae.eval()
    for got, expected in zip(loaded(x), sae(x)):
        assert torch.equal(got, expected)
    for got, expected in zip(loaded.encode(x), sae.encode(x)):
        assert torch.equal(got, expected)


def interprot_forward(state: dict, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """InterProt's ``SparseAutoencoder.forward`` (sae_model.py), written out: reconstruction and
    the dense latents."""
    mu = x.mean(dim=-1, keepdim=True)
    centred = x - mu
    std = centred.std(dim=-1, keepdim=True)
    normed = centred / (std + 1e-5) - state["b_pre"]
    pre_acts = normed @ state["w_enc"] + state["b_enc"]
    top = torch.topk(pre_acts, k=k, dim=-1, sorted=False)
    latents = torch.zeros_like(pre_acts).scatter(-1, top.indices, F.relu(top.values))
    recons = latents @ state["w_dec"] + state["b_pre"]
    return recons * std + mu, latents


def interprot_state(d_model: int = 12, d_hidden: int = 48, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    w_enc = torch.randn(d_model, d_hidden, generator=generator) / d_model**0.5
    w_dec = w_enc.T.contiguous()
    w_dec /= w_dec.norm(dim=0)  # their normalisation: per output dimension
    return {
        "w_enc": w_enc, "w_dec": w_dec,
        "b_enc": 0.1 * torch.randn(d_hidden, generator=generator),
        "b_pre": 0.1 * torch.randn(d_model, generator=generator),
        "stats_last_nonzero": torch.zeros(d_hidden, dtype=torch.int64),
    }


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".ckpt"])
def test_loads_interprot_checkpoints(tmp_path, suffix):
    state = interprot_state()
    path = tmp_path / f"esm2_plm12_l7_sae48_k5{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    elif suffix == ".pt":
        torch.save(state, path)
    else:  # a Lightning checkpoint of their training module
        torch.save({"state_dict": {f"sae_model.{name}": t for name, t in state.items()}}, path)
    sae = load_sae(path)
    assert type(sae) is TopKSAE
    assert (sae.cfg.d_model, sae.cfg.n_latents, sae.cfg.k) == (12, 48, 5)
    assert sae.cfg.standardize_tokens and float(sae.input_scale) == 1.0
    assert sae.source["layer"] == 7
    # Published weights are kept as they are (no per-latent renormalisation).
    assert torch.equal(sae.W_dec, state["w_dec"]) and torch.equal(sae.W_enc, state["w_enc"].T)

    x = 3.0 * torch.randn(40, 12, generator=torch.Generator().manual_seed(1)) + 1.0
    recons, latents = interprot_forward(state, x, k=5)
    torch.testing.assert_close(sae(x).sae_out, recons)
    vals, idx = sae.encode(x)
    torch.testing.assert_close(torch.zeros_like(latents).scatter(1, idx, vals), latents)
    torch.testing.assert_close(sae.decode(vals, idx, x=x), recons)
    with pytest.raises(ValueError, match="needs the input x"):
        sae.decode(vals, idx)
    # Saved in protsae's format, it keeps behaving like theirs.
    sae.save(tmp_path / "converted")
    torch.testing.assert_close(load_sae(tmp_path / "converted")(x).sae_out, recons)


def test_interprot_names_and_k(tmp_path):
    assert interprot_name_info("esm2_plm1280_l24_sae4096_k64.safetensors") == {
        "d_model": 1280, "layer": 24, "n_latents": 4096, "k": 64
    }
    assert interprot_name_info("esm2_plm1280_l24_sae4096_100Kseqs.pt")["k"] is None
    assert interprot_name_info("weights.pt") == {}
    path = tmp_path / "esm2_plm12_l3_sae48_100Kseqs.safetensors"
    save_file(interprot_state(), str(path))
    with pytest.raises(ValueError, match="pass k"):
        load_sae(path)
    assert load_sae(path, k=4).cfg.k == 4
    mismatched = tmp_path / "esm2_plm16_l3_sae48_k4.safetensors"
    save_file(interprot_state(), str(mismatched))
    with pytest.raises(ValueError, match="d_model"):
        load_sae(mismatched)


def write_planted_shard(path: Path, n_tokens: int, seed: int, d_model: int = 64, n_atoms: int = 256, k_true: int = 4):
    """Tokens that are sums of ``k_true`` of ``n_atoms`` random unit atoms with magnitudes in
    [0.5, 2], plus a constant offset and small noise; sequences of 100 tokens. Returns the atoms."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d_model))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    offset = 2.0 * rng.normal(size=d_model)
    chosen = rng.integers(n_atoms, size=(n_tokens, k_true))
    while (repeated := (np.diff(np.sort(chosen, axis=1), axis=1) == 0).any(axis=1)).any():
        chosen[repeated] = rng.integers(n_atoms, size=(int(repeated.sum()), k_true))
    magnitudes = rng.uniform(0.5, 2.0, size=(n_tokens, k_true))
    x = offset + 0.01 * rng.normal(size=(n_tokens, d_model))
    for slot in range(k_true):
        x += magnitudes[:, slot, None] * atoms[chosen[:, slot]]
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


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted-dictionary shards shared by the recovery tests: 256 and 128 atoms."""
    root = tmp_path_factory.mktemp("planted")
    shards = {n_atoms: root / f"atoms{n_atoms}.parquet" for n_atoms in (256, 128)}
    return {n_atoms: (path, write_planted_shard(path, 300_000, 0, n_atoms=n_atoms)) for n_atoms, path in shards.items()}


# Per variant: atoms planted, SAE settings, learning rate, least share recovered, most held-out
# FVU. Matryoshka's first prefix holds as many latents as there are atoms: on independent atoms
# a smaller first prefix learns mixtures (its latents must reconstruct alone), and only ~60% of
# the atoms are then matched at cosine 0.9. The ReLU SAE's L1 shrinks activations, hence the FVU.
RECOVERY_CASES = {
    "topk": (256, {}, 3e-3, 0.9, 0.15),
    "batchtopk": (256, {}, 6e-3, 0.8, 0.15),
    "matryoshka": (128, {"matryoshka_prefixes": (0.25, 0.5, 1.0)}, 6e-3, 0.8, 0.1),
    "relu_l1": (256, {"l1_coef": 2.4}, 6e-3, 0.9, 0.3),
}


@pytest.mark.parametrize("variant", list(RECOVERY_CASES))
def test_training_recovers_planted_dictionary(tmp_path, one_thread, planted, variant):
    n_atoms, overrides, lr, least_recovered, most_fvu = RECOVERY_CASES[variant]
    shard, atoms = planted[n_atoms]
    # The thresholds above were set for unscaled float32 training.
    sae_cfg = SAEConfig(
        d_model=64, n_latents=512, k=8, k_aux=32, dead_tokens_threshold=20_000, seed=0, variant=variant,
        normalize_input=False, **overrides
    )
    train_cfg = TrainConfig(
        n_tokens=250_000, batch_size=512, lr=lr, holdout_fraction=0.05, eval_tokens=10_000,
        shuffle_buffer=8192, log_every=50, device="cpu", seed=0, autocast="none",
    )
    metrics = train_sae([shard], sae_cfg, train_cfg, tmp_path / "sae", progress=False)
    sae = load_sae(tmp_path / "sae")
    assert type(sae) is sae_class(variant)
    # Every variant saves unit-norm decoder rows (relu_l1 folds the norms into the encoder).
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(512))
    similarity = atoms @ sae.W_dec.detach().double().numpy().T
    recovered = float((similarity.max(axis=1) > 0.9).mean())
    assert recovered >= least_recovered, f"only {recovered:.0%} of planted atoms recovered"
    assert metrics["heldout_fvu"] < most_fvu
    assert metrics["heldout_l0"] <= 8 if variant != "relu_l1" else metrics["heldout_l0"] < 16
    assert metrics["heldout_tokens"] == 10_000
    if variant == "matryoshka":
        # The atoms are learnt by the first prefix (a quarter of the latents).
        assert (similarity.argmax(axis=1) < 128).mean() >= 0.8
    if variant == "relu_l1":
        assert metrics["heldout_fvu_stored"] >= metrics["heldout_fvu"]
    else:
        assert metrics["heldout_fvu_stored"] == metrics["heldout_fvu"]


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
