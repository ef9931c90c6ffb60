"""Published SAEs: each layout, written with random weights as its library writes it, loads into a
protsae SAE whose codes and reconstruction are those of the library's own forward (written out
here from each library's code, independently of protsae); bad checkpoints name what is wrong."""

import json

import numpy as np
import pytest
import torch
from conftest import write_shard
from published_checkpoints import (
    write_dictionary_learning,
    write_interprot,
    write_saelens,
    write_sparsify,
)
from safetensors.torch import load_file, save_file

from protsae.codes.encode import encode_rows
from protsae.sae.io import load_sae
from protsae.sae.published import import_published, load_published

D_IN, WIDTH, K = 16, 48, 5
ATOL = 1e-5


@pytest.fixture
def x():
    generator = torch.Generator().manual_seed(7)
    # Offset and scaled like residual streams, so centring and standardising matter.
    return torch.randn(40, D_IN, generator=generator) * 2.0 + torch.linspace(-1, 3, D_IN)


def dense_codes(sae, x):
    """protsae's codes as a dense (n, width) matrix."""
    values, indices = sae.encode(x)
    return torch.zeros(len(x), sae.cfg.n_latents).scatter_(1, indices, values)


def protsae_output(sae, x):
    """Dense codes and reconstruction of a protsae SAE: forward's (every active latent)."""
    sae.eval()
    with torch.no_grad():
        return dense_codes(sae, x), sae(x).sae_out


def keep_top(z, k):
    """Each row's k largest entries, the rest 0 (what a ReLU SAE's stored codes keep)."""
    top = z.topk(k, dim=-1)
    return torch.zeros_like(z).scatter_(-1, top.indices, top.values)


# The libraries' forwards, from their code.

def sparsify_forward(state, k, x):
    """sparsify SparseCoder: top-k of ReLU(encoder(x - b_dec)); decode W_dec[idx] + b_dec."""
    pre = torch.relu((x - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
    values, indices = pre.topk(k, dim=-1, sorted=False)
    x_hat = torch.einsum("nk,nkd->nd", values, state["W_dec"][indices]) + state["b_dec"]
    return torch.zeros_like(pre).scatter_(-1, indices, values), x_hat


def saelens_forward(state, cfg, x):
    """SAELens StandardSAE / TopKSAE: process_sae_in (optional layer norm, minus b_dec if
    apply_b_dec_to_input), W_enc, ReLU or TopK-then-ReLU, W_dec + b_dec, layer norm undone."""
    sae_in = x
    if cfg["normalize_activations"] == "layer_norm":
        mu = sae_in.mean(dim=-1, keepdim=True)
        sae_in = sae_in - mu
        std = sae_in.std(dim=-1, keepdim=True)
        sae_in = sae_in / (std + 1e-5)
    sae_in = sae_in - state["b_dec"] * cfg["apply_b_dec_to_input"]
    hidden_pre = sae_in @ state["W_enc"] + state["b_enc"]
    if cfg["architecture"] == "topk":
        top = torch.topk(hidden_pre, k=cfg["k"], dim=-1)
        acts = torch.zeros_like(hidden_pre).scatter_(-1, top.indices, torch.relu(top.values))
    else:
        acts = torch.relu(hidden_pre)
    out = acts @ state["W_dec"] + state["b_dec"]
    if cfg["normalize_activations"] == "layer_norm":
        out = out * std + mu
    return acts, out


def dictionary_learning_forward(state, x, normalize_features=False):
    """dictionary_learning AutoEncoder (InterPLM ReLUSAE): ReLU(encoder(x - bias)), decoder(f) +
    bias; InterPLM's normalize_features divides the features by activation_rescale_factor."""
    f = torch.relu((x - state["bias"]) @ state["encoder.weight"].T + state["encoder.bias"])
    x_hat = f @ state["decoder.weight"].T + state["bias"]
    if normalize_features:
        f = f / state["activation_rescale_factor"]
    return f, x_hat


def dictionary_learning_topk_forward(state, x):
    """dictionary_learning AutoEncoderTopK: top-k of ReLU(encoder(x - b_dec)), decoder + b_dec."""
    post_relu = torch.relu((x - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
    top = post_relu.topk(int(state["k"]), dim=-1, sorted=False)
    f = torch.zeros_like(post_relu).scatter_(-1, top.indices, top.values)
    return f, f @ state["decoder.weight"].T + state["b_dec"]


def interprot_forward(state, k, x):
    """InterProt SparseAutoencoder: LN (mean, unbiased std + 1e-5), minus b_pre, top-k of
    x w_enc + b_enc with ReLU, z w_dec + b_pre, times std plus mean."""
    mu = x.mean(dim=-1, keepdim=True)
    centred = x - mu
    std = centred.std(dim=-1, keepdim=True)
    normed = centred / (std + 1e-5)
    pre = (normed - state["b_pre"]) @ state["w_enc"] + state["b_enc"]
    top = pre.topk(k, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
    return z, (z @ state["w_dec"] + state["b_pre"]) * std + mu


# Known answers, layout by layout.

def test_sparsify_matches_its_forward(tmp_path, x):
    state = write_sparsify(tmp_path / "layers.2", D_IN, WIDTH, K)
    sae = load_published("sparsify", tmp_path / "layers.2")
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = sparsify_forward(state, K, x)
    assert sae.cfg.k == K and sae.cfg.n_latents == WIDTH and type(sae).__name__ == "TopKSAE"
    torch.testing.assert_close(codes, ref_codes, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)
    # Decoding the stored codes gives the same reconstruction (a TopK SAE stores all it uses).
    torch.testing.assert_close(sae.decode(*sae.encode(x)), ref_x_hat, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("architecture", "apply_b_dec_to_input", "normalize_activations"),
    [("standard", True, "none"), ("standard", False, "none"), ("standard", True, "layer_norm"),
     ("topk", True, "none"), ("topk", False, "layer_norm")],
)
def test_saelens_matches_its_forward(tmp_path, x, architecture, apply_b_dec_to_input, normalize_activations):
    state = write_saelens(tmp_path / "sae", D_IN, WIDTH, architecture, k=K, apply_b_dec_to_input=apply_b_dec_to_input,
                          normalize_activations=normalize_activations)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    slots = K if architecture == "topk" else WIDTH
    sae = load_published("saelens", tmp_path / "sae", k=slots)
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = saelens_forward(state, cfg, x)
    assert sae.cfg.standardize_tokens == (normalize_activations == "layer_norm")
    torch.testing.assert_close(codes, ref_codes, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)


def test_relu_codes_keep_the_k_largest_and_forward_uses_all(tmp_path, x):
    """A ReLU SAE with fewer code slots than active latents: the codes are the library's top k,
    the forward's reconstruction still the library's, from every active latent."""
    state = write_saelens(tmp_path / "sae", D_IN, WIDTH, "standard")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    sae = load_published("saelens", tmp_path / "sae", k=K)
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = saelens_forward(state, cfg, x)
    assert int((ref_codes > 0).sum(-1).min()) > K  # the test means something: more latents fire than are kept
    torch.testing.assert_close(codes, keep_top(ref_codes, K), atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)


@pytest.mark.parametrize("rescale", [False, True])
def test_dictionary_learning_matches_its_forward(tmp_path, x, rescale):
    state = write_dictionary_learning(tmp_path / "trainer_0", D_IN, WIDTH, "relu", rescale=rescale)
    sae = load_published("dictionary_learning", tmp_path / "trainer_0", k=WIDTH, rescale_features=rescale)
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = dictionary_learning_forward(state, x, normalize_features=rescale)
    assert type(sae).__name__ == "ReLUSAE"
    torch.testing.assert_close(codes, ref_codes, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)


def test_dictionary_learning_topk_matches_its_forward(tmp_path, x):
    state = write_dictionary_learning(tmp_path / "trainer_1", D_IN, WIDTH, "topk", k=K)
    sae = load_published("dictionary_learning", tmp_path / "trainer_1", k=K)
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = dictionary_learning_topk_forward(state, x)
    assert type(sae).__name__ == "TopKSAE"
    torch.testing.assert_close(codes, ref_codes, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)


def test_interprot_matches_its_forward(tmp_path, x):
    state = write_interprot(tmp_path, D_IN, WIDTH, K)
    sae = load_published("interprot", state["path"], k=K)
    codes, x_hat = protsae_output(sae, x)
    ref_codes, ref_x_hat = interprot_forward(state, K, x)
    torch.testing.assert_close(codes, ref_codes, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_hat, ref_x_hat, atol=ATOL, rtol=0)
    torch.testing.assert_close(sae.decode(*sae.encode(x), x=x), ref_x_hat, atol=ATOL, rtol=0)


# Bad checkpoints.

def test_a_checkpoint_of_another_k_or_layout_names_the_file(tmp_path):
    write_sparsify(tmp_path / "s", D_IN, WIDTH, K)
    with pytest.raises(ValueError, match=r"cfg\.json: the checkpoint's k is 5, but k=8 was asked for"):
        load_published("sparsify", tmp_path / "s", k=8)
    with pytest.raises(FileNotFoundError, match=r"a saelens SAE folder holds sae_weights\.safetensors, cfg\.json; "
                                                r"sae_weights\.safetensors missing"):
        load_published("saelens", tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_published("dictionary_learning", tmp_path / "absent", k=4)
    with pytest.raises(ValueError, match="unknown published-SAE layout 'sae_lens'"):
        load_published("sae_lens", tmp_path / "s")


def test_bad_shapes_and_keys_are_named(tmp_path):
    write_sparsify(tmp_path / "s", D_IN, WIDTH, K)
    state = load_file(str(tmp_path / "s" / "sae.safetensors"))
    state["W_dec"] = state["W_dec"][:, :-1].contiguous()
    save_file(state, str(tmp_path / "s" / "sae.safetensors"))
    with pytest.raises(ValueError, match=rf"sae\.safetensors: W_dec is \({WIDTH}, {D_IN - 1}\), expected \({WIDTH}, {D_IN}\)"):
        load_published("sparsify", tmp_path / "s")

    write_saelens(tmp_path / "l", D_IN, WIDTH, "standard")
    state = load_file(str(tmp_path / "l" / "sae_weights.safetensors"))
    del state["b_enc"]
    save_file(state, str(tmp_path / "l" / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match=r"not a saelens SAE: missing \['b_enc'\]"):
        load_published("saelens", tmp_path / "l", k=K)

    write_dictionary_learning(tmp_path / "d", D_IN, WIDTH, "relu")
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    config["trainer"]["dict_size"] = WIDTH * 2
    (tmp_path / "d" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"config\.json: trainer\.dict_size is {2 * WIDTH}, but .*ae\.pt has {WIDTH}"):
        load_published("dictionary_learning", tmp_path / "d", k=K)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"normalize_activations": "constant_norm_rescale"}, "normalize_activations is 'constant_norm_rescale'"),
     ({"normalize_activations": "expected_average_only_in"}, "normalize_activations is 'expected_average_only_in'"),
     ({"architecture": "jumprelu"}, "architecture 'jumprelu'; only 'standard' and 'topk' are read")],
)
def test_saelens_settings_without_an_equivalent_are_refused(tmp_path, changes, message):
    write_saelens(tmp_path / "l", D_IN, WIDTH, **changes)
    with pytest.raises(ValueError, match=message):
        load_published("saelens", tmp_path / "l", k=K)


def test_unsupported_library_options_are_refused(tmp_path):
    write_sparsify(tmp_path / "t", D_IN, WIDTH, K, transcode=True)
    with pytest.raises(ValueError, match="transcode is true"):
        load_published("sparsify", tmp_path / "t")
    write_sparsify(tmp_path / "g", D_IN, WIDTH, K, activation="groupmax")
    with pytest.raises(ValueError, match="activation is 'groupmax'"):
        load_published("sparsify", tmp_path / "g")
    write_dictionary_learning(tmp_path / "n", D_IN, WIDTH, "relu", rescale=True)
    state = torch.load(tmp_path / "n" / "ae.pt", weights_only=True)
    torch.save(state | {"normalize_to_sqrt_d": torch.tensor(True)}, tmp_path / "n" / "ae.pt")
    with pytest.raises(ValueError, match="normalize_to_sqrt_d is set"):
        load_published("dictionary_learning", tmp_path / "n", k=K)
    write_dictionary_learning(tmp_path / "r", D_IN, WIDTH, "relu")
    with pytest.raises(ValueError, match="no activation_rescale_factor"):
        load_published("dictionary_learning", tmp_path / "r", k=K, rescale_features=True)
    with pytest.raises(ValueError, match="has no k; give k"):
        load_published("dictionary_learning", tmp_path / "r")


# The import: written where training writes, with its metrics, read back as any SAE.

def write_cache(tmp_path, d_model, n_sequences=40, length=30, seed=0):
    generator = np.random.default_rng(seed)
    ids = [f"seq{i}" for i in range(n_sequences)]
    acts = (generator.standard_normal((n_sequences * length, d_model)) + 1.0).astype(np.float32)
    path = tmp_path / "shard0.parquet"
    write_shard(path, ids, [length] * n_sequences, acts)
    return [str(path)], torch.from_numpy(acts)


def entry_of(path, **changes):
    return {"name": "ext", "layout": "sparsify", "path": str(path), "layer": 2, "k": K, "width": WIDTH} | changes


def test_import_writes_a_protsae_sae_with_its_metrics(tmp_path):
    shards, acts = write_cache(tmp_path, D_IN)
    state = write_sparsify(tmp_path / "ckpt", D_IN, WIDTH, K)
    out = tmp_path / "sae"
    metrics = import_published(entry_of(tmp_path / "ckpt"), "sae.published[0]", D_IN, shards, holdout_fraction=0.25,
                               holdout_seed=0, eval_tokens=10_000, out_dir=out)
    config = json.loads((out / "config.json").read_text())
    assert config["source"]["layout"] == "sparsify" and config["source"]["name"] == "ext"
    assert config["source"]["cfg"]["k"] == K and config["variant"] == "topk"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0 < metrics["heldout_tokens"] < len(acts)
    assert metrics["heldout_l0"] == pytest.approx(K)
    assert metrics["heldout_fvu"] == pytest.approx(metrics["heldout_fvu_stored"])
    assert 0 <= metrics["heldout_alive_share"] <= 1 and "decoder_max_cosine_mean" in metrics
    # The written SAE encodes as the library does, through the code writer every stage uses.
    loaded = load_sae(out)
    idx, val = encode_rows(loaded, acts[:20])
    ref_codes, _ = sparsify_forward(state, K, acts[:20])
    dense = torch.zeros(20, WIDTH).scatter_(1, torch.from_numpy(idx).long(), torch.from_numpy(val))
    torch.testing.assert_close(dense, ref_codes, atol=ATOL, rtol=0)


def test_import_names_the_config_key_when_the_shapes_do_not_fit(tmp_path):
    shards, _ = write_cache(tmp_path, D_IN + 4)
    write_sparsify(tmp_path / "ckpt", D_IN, WIDTH, K)
    common = dict(holdout_fraction=0.25, holdout_seed=0, eval_tokens=100, out_dir=tmp_path / "sae")
    with pytest.raises(ValueError, match=rf"sae\.published\[3\] \(name 'ext', layout sparsify, path .*ckpt\): the SAE "
                                         rf"reads vectors of d_in={D_IN}, but layer 2 of the model has d_model={D_IN + 4}"):
        import_published(entry_of(tmp_path / "ckpt"), "sae.published[3]", D_IN + 4, shards, **common)
    with pytest.raises(ValueError, match=rf"sae\.published\[0\] .*the checkpoint has {WIDTH} latents, but the entry says width=64"):
        import_published(entry_of(tmp_path / "ckpt", width=64), "sae.published[0]", D_IN, shards, **common)
    with pytest.raises(ValueError, match=r"sae\.published\[0\] .*cfg\.json: the checkpoint's k is 5, but k=6"):
        import_published(entry_of(tmp_path / "ckpt", k=6), "sae.published[0]", D_IN, shards, **common)
    assert not (tmp_path / "sae").exists()
