"""The Hugging Face adapter equals a direct transformers call, on a tiny random ESM-2."""

import tempfile

import numpy as np
import pytest
import torch

from protsae.models import load_model, save_random_esm2
from protsae.models.hf import ESM2_VOCAB, esm2_tokenizer

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF", "ACDW", "XBUZO"]


def test_hidden_states_equal_direct_transformers_call(tiny_model):
    batch = tiny_model.tokenize(SEQS)
    with torch.no_grad():
        ref = tiny_model.module(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
        )
    layers = list(range(tiny_model.n_layers + 1))
    ours = tiny_model.hidden_states(batch, layers)
    assert len(ref.hidden_states) == tiny_model.n_layers + 1
    for layer in layers:
        torch.testing.assert_close(ours[layer], ref.hidden_states[layer].float(), rtol=0, atol=0)
    torch.testing.assert_close(tiny_model.logits(batch), ref.logits, rtol=0, atol=0)


def test_tokens_match_the_esm_tokenizer(tiny_model):
    tokenizer = esm2_tokenizer()
    for seq in SEQS:
        assert tiny_model.token_ids(seq) == tokenizer(seq)["input_ids"]


def test_the_tokenizer_leaves_no_vocabulary_folder_behind(tmp_path, monkeypatch):
    """Every job of the tiny workflow builds one; each used to leave a /tmp/esm2_vocab_* folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tokenizer = esm2_tokenizer()
    assert list(tmp_path.iterdir()) == []
    assert tokenizer("MKV")["input_ids"] == [ESM2_VOCAB.index(t) for t in ("<cls>", "M", "K", "V", "<eos>")]
    saved = tmp_path / "saved"
    tokenizer.save_pretrained(saved)
    assert (saved / "vocab.txt").read_text().split() == ESM2_VOCAB


def test_residue_mask_excludes_specials_and_padding(tiny_model):
    batch = tiny_model.tokenize(SEQS)
    assert batch.residue_mask.sum(1).tolist() == [len(s) for s in SEQS]
    for row, seq in enumerate(SEQS):
        cols = batch.residue_mask[row].nonzero().flatten().tolist()
        assert cols == list(range(1, len(seq) + 1))
        ids = batch.input_ids[row, cols].tolist()
        assert [ESM2_VOCAB[i] for i in ids] == list(seq)


def test_batched_equals_one_at_a_time(tiny_model):
    batch = tiny_model.tokenize(SEQS)
    together = tiny_model.hidden_states(batch, [2])[2]
    for row, seq in enumerate(SEQS):
        alone = tiny_model.hidden_states(tiny_model.tokenize([seq]), [2])[2][0, 1 : len(seq) + 1]
        torch.testing.assert_close(together[row, 1 : len(seq) + 1], alone, rtol=1e-4, atol=1e-5)


def test_requesting_one_layer_stops_early_and_agrees(tiny_model):
    batch = tiny_model.tokenize(SEQS)
    calls = []
    handle = tiny_model.module.esm.encoder.layer[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        only = tiny_model.hidden_states(batch, [1])[1]
    finally:
        handle.remove()
    assert calls == []  # block 3 never ran
    torch.testing.assert_close(only, tiny_model.hidden_states(batch, [1, 3])[1])


def test_replace_layer_output(tiny_model):
    batch = tiny_model.tokenize(SEQS)
    base = tiny_model.logits(batch)
    with tiny_model.replace_layer_output(1, lambda h: h):
        torch.testing.assert_close(tiny_model.logits(batch), base)
    with tiny_model.replace_layer_output(1, torch.zeros_like):
        zeroed = tiny_model.logits(batch)
        states = tiny_model.hidden_states(batch, [1, 2])
    assert (zeroed - base).abs().max() > 1e-3
    assert states[1].abs().max() == 0
    # Replacing the last layer (read after the final layer norm) feeds the LM head directly.
    top = tiny_model.n_layers
    last = tiny_model.hidden_states(batch, [top])[top]
    with tiny_model.replace_layer_output(top, lambda h: 2 * h):
        doubled = tiny_model.logits(batch)
    torch.testing.assert_close(doubled, tiny_model.module.lm_head(2 * last), rtol=1e-4, atol=1e-4)


def test_lm_targets_for_masked_lm(tiny_model):
    batch = tiny_model.tokenize(SEQS[:2])
    targets = tiny_model.lm_targets(SEQS[:2], batch)
    assert ((targets != -100) == batch.residue_mask).all()
    assert (targets[batch.residue_mask] == batch.input_ids[batch.residue_mask]).all()


def test_unknown_letter_and_too_long_are_errors(tiny_model):
    with pytest.raises(ValueError, match="'J'"):
        tiny_model.tokenize(["ACJ"])
    with pytest.raises(ValueError, match="max_length"):
        tiny_model.tokenize(["A" * (tiny_model.max_residues + 1)])


def test_esm2_650m_shape_saved_and_loaded_by_path(tmp_path):
    """The real-run code path: an ESM-2 of the exact 650M shape, saved and loaded by path."""
    directory = save_random_esm2(tmp_path / "esm2_650m_random", hidden_size=1280, num_layers=33,
                                 num_heads=20, intermediate_size=5120)
    model = load_model({"kind": "esm2", "name": "esm2_random", "id": str(directory), "device": "cpu"})
    assert (model.d_model, model.n_layers, model.max_residues) == (1280, 33, 1022)
    n_params = sum(p.numel() for p in model.module.parameters())
    assert 640e6 < n_params < 660e6
    batch = model.tokenize(["MKTAYIAKQR"])
    states = model.hidden_states(batch, [24])
    assert states[24].shape == (1, 12, 1280)


def test_missing_hub_id_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="huggingface-cli download facebook/esm2_t6_8M_UR50D"):
        load_model({"kind": "esm2", "name": "x", "id": "facebook/esm2_t6_8M_UR50D", "device": "cpu"})


def test_other_masked_lm_by_path(tmp_path):
    """Any BERT-style masked protein LM with per-residue tokens loads through the same path."""
    from transformers import BertConfig, BertForMaskedLM

    directory = tmp_path / "bert"
    config = BertConfig(vocab_size=len(ESM2_VOCAB), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, pad_token_id=1)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(directory)
    esm2_tokenizer(directory).save_pretrained(directory)
    model = load_model({"kind": "hf_masked_lm", "name": "bert", "id": str(directory), "device": "cpu"})
    batch = model.tokenize(SEQS[:2])
    with torch.no_grad():
        ref = model.module(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           output_hidden_states=True)
    ours = model.hidden_states(batch, [0, 1, 2])
    for layer in range(3):
        np.testing.assert_allclose(ours[layer].numpy(), ref.hidden_states[layer].numpy(), atol=0)
    assert model.n_layers == 2 and model.d_model == 16
