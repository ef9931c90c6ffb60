"""Attention heads in SAE features on a tiny ESM-2 whose head 0 of block 2 is set by hand to attend
to the previous residue and to copy a planted direction: the analysis labels it previous-residue,
its OV maps the planted source latent onto the planted target, and the feature circuits match the
model's own attention (METHODS.md section 12)."""

import math

import numpy as np
import pytest
import torch

from protsae.heads.behaviour import block_codes, block_inputs
from protsae.heads.block import analyse_block, frequent_latents
from protsae.heads.features import (
    CONSTANT,
    feature_inputs,
    ov_matrix,
    qk_matrix,
    qk_vectors,
)
from protsae.heads.roles import head_role, role_masses
from protsae.heads.weights import attention_pattern, block_attention, rotate
from protsae.models.hf import HFMaskedLM, esm2_tokenizer, random_esm2
from protsae.sae.config import SAEConfig
from protsae.sae.variants import TopKSAE

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRESVPALL",
    "MSLSGKKVLVTGASGGIGRAIAEALAARGAEVVLVARSEEKLKAVAAEIGGKAYAVVADVSSEADVAALVEAAVREFGRLDVLVNNAGI",
    "MADQLTEEQIAEFKEAFSLFDKDGDGTITTKELGTVMRSLGQNPTEAELQDMINEVDADGNGTIDFPEFLTMMARKMKDTDSEEEIREAFRVFDKDGNGYISAAELRHVMTNLGEKLTDEEVDEMIREADIDGDGQVNYEEFVQMMTAK",
    "MTEYKLVVVGAGGVGKSALTIQLIQNHFVDEYDPTIEDSYRKQVVIDGETCLLDILDTAGQEEYSAMRDQYMRTGEGFLCVFAINNTKSFEDIHQYREQIKRVKDSDDVPMVLVGNKCDLAARTVESRQAQDLARSYGIPYIETSAKTRQGVEDAFYTLVREIRQH",
]
BLOCK, HEAD = 2, 0


def orthonormal_sae(seed: int, d: int = 32, k: int = 4) -> TopKSAE:
    """A TopK SAE whose d latents read and write the rows of a random orthonormal basis."""
    sae = TopKSAE(SAEConfig(d_model=d, n_latents=d, k=k, seed=seed))
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    with torch.no_grad():
        sae.W_dec.copy_(basis.T)
        sae.W_enc.copy_(basis.T)
        sae.b_pre.zero_()
        sae.b_enc.zero_()
    return sae.eval()


@pytest.fixture(scope="module")
def planted():
    """(model, SAE A at layer 1, SAE B at layer 2, source latent, target latent)."""
    model = HFMaskedLM(random_esm2(seed=3), esm2_tokenizer(), "tiny-esm2", name="tiny_esm2", revision="planted")
    sae_a, sae_b = orthonormal_sae(1), orthonormal_sae(2)
    # The source: A's latent active on the most residues of the block's input (layer 1).
    x = torch.cat([h[t.residue_mask] for t, h in block_inputs(model, BLOCK, SEQUENCES, 4096)])
    _, indices = sae_a.encode(x)
    source = int(torch.bincount(indices.flatten(), minlength=32).argmax())
    target = 7
    self_attention = model._blocks[BLOCK - 1].attention.self
    dense = model._blocks[BLOCK - 1].attention.output.dense
    d_head = 8
    rows = slice(HEAD * d_head, (HEAD + 1) * d_head)
    frequency = 1.0 / (10000 ** (torch.arange(0, d_head, 2).float() / d_head))
    q = torch.zeros(d_head)
    q[[0, 1]] = 10.0  # the two fastest rotary pairs, (0, 4) and (1, 5)
    k = rotate(q, 1, frequency)  # score(d) = q . R(d f) R(f) q: largest at d = -1, the previous residue
    u = sae_a.W_dec[source].detach()
    with torch.no_grad():
        self_attention.query.weight[rows] = 0
        self_attention.query.bias[rows] = q
        self_attention.key.weight[rows] = 0
        self_attention.key.bias[rows] = k
        self_attention.value.weight[rows] = 0
        self_attention.value.weight[rows.start] = u - u.mean()  # reads the source's (centred) direction
        self_attention.value.bias[rows] = 0
        dense.weight[:, rows] = 0
        dense.weight[:, rows.start] = 3 * sae_b.W_enc[target].detach()  # writes the target's input direction
    return model, sae_a, sae_b, source, target


def test_rotate_matches_the_models_rotary_convention():
    inv_freq = 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8))
    q, k = torch.randn(8), torch.randn(8)
    # HF: x * cos + rotate_half(x) * sin at absolute positions; the score depends on j - i only.
    score = lambda i, j: rotate(q, i, inv_freq) @ rotate(k, j, inv_freq)  # noqa: E731
    for i, j in [(3, 2), (10, 14), (0, 5)]:
        assert score(i, j) == pytest.approx(float(q @ rotate(k, j - i, inv_freq)), abs=1e-5)
    freqs = torch.cat([5 * inv_freq, 5 * inv_freq])
    rotate_half = torch.cat([-k[4:], k[:4]])
    torch.testing.assert_close(rotate(k, 5, inv_freq), k * freqs.cos() + rotate_half * freqs.sin())


def test_attention_pattern_equals_the_models_output_attentions(planted):
    model, *_ = planted
    tokens = model.tokenize(SEQUENCES[1:3])
    hidden = model.hidden_states(tokens, [BLOCK - 1])[BLOCK - 1]
    mine = attention_pattern(block_attention(model, BLOCK), hidden, tokens.attention_mask)
    before = model.module.config._attn_implementation
    model.module.set_attn_implementation("eager")  # the only one that returns the attention pattern
    try:
        out = model.module(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_attentions=True)
    finally:
        model.module.set_attn_implementation(before)
    reference = out.attentions[BLOCK - 1]
    real = tokens.attention_mask[:, None, :, None] & tokens.attention_mask[:, None, None, :]
    torch.testing.assert_close(mine[real.expand_as(mine)], reference[real.expand_as(reference)], atol=1e-5, rtol=1e-4)


def test_qk_in_features_is_the_score_of_two_latents(planted):
    model, sae_a, *_ = planted
    att = block_attention(model, BLOCK)
    inputs = feature_inputs(att, sae_a, torch.randn(50, 32))
    latents = torch.tensor([3, 5])
    qk = qk_matrix(att, 1, inputs, -2, latents)
    q, k = qk_vectors(att, 1, inputs, latents)
    assert qk.shape == (3, 3)
    # Entry (a, b): query latent a at i, key latent b at i - 2, un-rotated vectors turned by R(-2 f).
    assert float(qk[0, 1]) == pytest.approx(float(q[0] @ rotate(k[1], -2, att.inv_freq)), rel=1e-5)
    assert float(qk[1, 0]) == pytest.approx(float(q[1] @ rotate(k[0], -2, att.inv_freq)), rel=1e-5)


def test_planted_head_is_previous_residue_and_maps_source_to_target(planted):
    model, sae_a, sae_b, source, target = planted
    others = [latent for latent in range(32) if latent != source][:7]
    result = analyse_block(model, BLOCK, sae_a, sae_b, SEQUENCES, [source, *others], ov_top=3, qk_top=3)
    heads = result.heads.set_index("head")
    assert heads.loc[HEAD, "role"] == "previous"
    assert heads.loc[HEAD, "measured_role"] == "previous"
    assert heads.loc[HEAD, "predicted_previous"] > 0.99
    assert heads.loc[HEAD, "measured_previous"] > 0.99
    assert heads.loc[HEAD, "profile_r"] > 0.99
    # The random heads are not previous-residue heads.
    assert (heads.drop(index=HEAD)["predicted_previous"] < 0.4).all()
    profile = result.profiles[result.profiles["head"] == HEAD].set_index("offset")
    assert profile["predicted"].idxmax() == -1 and profile["measured"].idxmax() == -1
    assert profile["predicted"].sum() == pytest.approx(1.0)
    # OV: the planted source's strongest target is the planted target, by a wide margin.
    ov = result.ov[(result.ov["head"] == HEAD) & (result.ov["source"] == source)].sort_values("rank")
    assert ov.iloc[0]["target"] == target
    assert abs(ov.iloc[0]["weight"]) > 10 * abs(ov.iloc[1]["weight"])
    # Measured with the attention frozen, the effect per unit of source matches the circuit up to
    # the per-token norm scale (the reference 1/sigma stands in for each token's own).
    assert ov.iloc[0]["measured"] == pytest.approx(ov.iloc[0]["weight"], rel=0.15)
    assert heads.loc[HEAD, "ov_r"] > 0.95
    # The QK tables: at offset -1 the head's strongest pair is the constant pseudo-feature's
    # (the planted head's queries and keys are its biases).
    qk = result.qk[(result.qk["head"] == HEAD) & (result.qk["offset"] == -1)]
    assert (qk.iloc[0]["query"], qk.iloc[0]["key"]) == (CONSTANT, CONSTANT)
    assert set(result.qk["offset"]) == set(range(-8, 9))


def test_sources_are_the_latents_active_in_most_proteins(planted):
    model, sae_a, sae_b, source, _ = planted
    batches = block_inputs(model, BLOCK, SEQUENCES, 4096)
    chosen = frequent_latents(batches, block_codes(sae_a, batches), 32, 5)
    assert chosen[0] == source  # the planted source was chosen as the most frequent latent
    counts = {}
    for tokens, x in batches:
        for row in range(x.shape[0]):
            _, indices = sae_a.encode(x[row][tokens.residue_mask[row]])
            for latent in indices.unique().tolist():
                counts[latent] = counts.get(latent, 0) + 1
    assert [counts[latent] for latent in chosen] == sorted(counts.values(), reverse=True)[:5]
    result = analyse_block(model, BLOCK, sae_a, sae_b, SEQUENCES, 5, ov_top=1, qk_top=1)
    assert sorted(result.ov["source"].unique()) == sorted(chosen)


def test_ov_matrix_is_linear_in_the_source_direction(planted):
    model, sae_a, sae_b, source, target = planted
    att = block_attention(model, BLOCK)
    inputs = feature_inputs(att, sae_a, torch.randn(50, 32) * 2)
    ov = ov_matrix(att, HEAD, inputs, sae_b.W_enc.detach())
    assert ov.shape == (32, 32)
    assert int(ov[:, source].abs().argmax()) == target
    # The planted write: e_target . 3 e_target * (centred u . gamma * centred u * 1/sigma).
    u = sae_a.W_dec[source].detach()
    centred = u - u.mean()
    gamma = att.ln_weight
    e = sae_b.W_enc[target].detach()
    expected = 3 * float(e @ e) * float(centred @ (gamma * centred)) * inputs.inv_sigma
    assert float(ov[target, source]) == pytest.approx(expected, rel=1e-4)


def test_latents_enter_the_heads_as_the_norm_of_the_stream(planted):
    """An SAE that reconstructs exactly (latents +-e_i, all kept; input scale 3, random b_pre) under
    a random pre-attention norm: the stream its codes give equals LayerNorm(x) when the reference
    1/sigma is x's own."""
    model, *_ = planted
    att = block_attention(model, BLOCK)
    generator = torch.Generator().manual_seed(5)
    att.ln_weight = 1 + 0.3 * torch.randn(32, generator=generator)
    att.ln_bias = 0.2 * torch.randn(32, generator=generator)
    sae = TopKSAE(SAEConfig(d_model=32, n_latents=64, k=32, seed=0))
    with torch.no_grad():
        basis = torch.cat([torch.eye(32), -torch.eye(32)])
        sae.W_dec.copy_(basis)
        sae.W_enc.copy_(basis)
        sae.b_enc.zero_()
        sae.b_pre.copy_(torch.randn(32, generator=generator))
        sae.input_scale.fill_(3.0)
    x = torch.randn(1, 32, generator=generator) * 2
    values, indices = sae.encode(x)
    inputs = feature_inputs(att, sae, x)
    torch.testing.assert_close(inputs.stream(values, indices), att.layer_norm(x), atol=1e-4, rtol=1e-4)


def test_last_esm_block_is_refused(planted):
    model, *_ = planted
    with pytest.raises(ValueError, match="read after the final norm"):
        block_attention(model, 3)


def test_roles_from_profiles():
    window = 8
    uniform = np.full(17, 1 / 17)
    assert head_role(uniform, window, copy_score=0.0) == "other"
    assert head_role(uniform, window, copy_score=0.8) == "copy"
    helix = np.zeros(17)
    helix[[8 - 4, 8 - 3, 8 + 3, 8 + 4]] = 0.2
    helix[8] = 0.2
    assert head_role(helix, window, copy_score=0.9) == "periodic_helix"
    nxt = np.zeros(17)
    nxt[9] = 1.0
    assert head_role(nxt, window, 0.0) == "next"
    assert role_masses(nxt, window)["next"] == 1.0 and role_masses(nxt, window)["self"] == 0.0
    with pytest.raises(ValueError, match="offsets up to 4"):
        head_role(np.ones(7) / 7, 3, 0.0)
    assert math.isclose(sum(role_masses(uniform, window).values()), 9 / 17)  # offsets -1, 1, +-3, +-4, +-2 and 0
