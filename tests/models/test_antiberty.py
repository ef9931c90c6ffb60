"""AntiBERTy (antiberty==0.1.3's weights, a BERT masked LM of antibodies) behind the ProteinLM
interface, and the head analysis's reading of a BERT block (no pre-attention norm, absolute
positions): its attention pattern equals the model's own."""

import gzip
from pathlib import Path

import pytest
import torch

pytest.importorskip("antiberty", reason="antiberty==0.1.3 is installed by make setup")

from protsae.heads.weights import attention_pattern, block_attention  # noqa: E402
from protsae.models import load_model  # noqa: E402
from protsae.models.base import TokenBatch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def antiberty():
    return load_model({"kind": "antiberty", "name": "antiberty", "device": "cpu"})


@pytest.fixture(scope="module")
def heavy_chains():
    lines = gzip.open(REPO / "resources/antibody/abnativ_human_vh.fasta.gz", "rt").read().split()
    return [line for line in lines if not line.startswith(">")][:4]


def test_shape_and_one_token_per_residue(antiberty, heavy_chains):
    assert (antiberty.d_model, antiberty.n_layers, antiberty.max_residues) == (512, 8, 510)
    assert antiberty.alphabet == frozenset("ACDEFGHIKLMNPQRSTVWY")
    batch = antiberty.tokenize(heavy_chains[:2])
    unk = antiberty.tokenizer.unk_token_id
    assert not (batch.input_ids == unk).any()  # the package's own tokenizer turns every residue into [UNK]
    assert batch.residue_mask.sum() == sum(len(s) for s in heavy_chains[:2])
    hidden = antiberty.hidden_states(batch, [0, 8])
    assert hidden[8].shape == (2, batch.input_ids.shape[1], 512)


def test_recovers_masked_residues_of_real_antibodies(antiberty, heavy_chains):
    """A real pretrained model: every 7th residue masked, most are predicted right (random: 5%)."""
    batch = antiberty.tokenize(heavy_chains)
    masked = batch.input_ids.clone()
    hide = batch.residue_mask & (torch.arange(masked.shape[1]) % 7 == 3)
    masked[hide] = antiberty.mask_token_id
    logits = antiberty.logits(TokenBatch(masked, batch.attention_mask, batch.residue_mask, batch.lengths))
    targets = antiberty.lm_targets(heavy_chains, batch)
    accuracy = (logits.argmax(-1)[hide] == targets[hide]).float().mean()
    assert accuracy > 0.6, accuracy


def test_bert_block_attention_equals_output_attentions(antiberty, heavy_chains):
    batch = antiberty.tokenize(heavy_chains[:2])
    block = 3
    att = block_attention(antiberty, block)
    assert att.ln_weight is None and not att.rotary and (att.n_heads, att.d_head) == (8, 64)
    hidden = antiberty.hidden_states(batch, [block - 1])[block - 1]
    mine = attention_pattern(att, hidden, batch.attention_mask)
    module = antiberty.module
    before = module.config._attn_implementation
    module.set_attn_implementation("eager")
    try:
        out = module(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
    finally:
        module.set_attn_implementation(before)
    real = (batch.attention_mask[:, None, :, None] & batch.attention_mask[:, None, None, :]).expand_as(mine)
    torch.testing.assert_close(mine[real], out.attentions[block - 1][real], atol=1e-5, rtol=1e-4)


def test_post_norms_fold_into_the_output_encoder(antiberty, heavy_chains):
    """A head's write reaches B through BERT's two post-LNs: B's encoder rows folded back through
    them (reference 1/sigma each) predict the real change of the block's output to within ~10% in
    size; unfolded, the prediction is about 1.7x too large."""
    from protsae.heads.behaviour import block_inputs, post_norm_scales
    from protsae.heads.features import output_encoder

    block, head = 3, 0
    att = block_attention(antiberty, block)
    batches = block_inputs(antiberty, block, heavy_chains, 4096)
    scales = post_norm_scales(antiberty, block, batches)
    assert len(scales) == 2 and all(0.1 < s < 10 for s in scales)
    tokens, x = batches[0]
    generator = torch.Generator().manual_seed(0)
    encoder = torch.randn(64, 512, generator=generator)
    write = att.W_O[head] @ (att.W_V[head] @ torch.randn(512, generator=generator))
    write = 0.05 * write / write.norm() * x[tokens.residue_mask].norm(dim=-1).mean()
    dense = antiberty._blocks[block - 1].attention.output.dense
    clean = antiberty.hidden_states(tokens, [block])[block][tokens.residue_mask]
    handle = dense.register_forward_hook(lambda module, args, out: out + write)
    try:
        moved = antiberty.hidden_states(tokens, [block])[block][tokens.residue_mask]
    finally:
        handle.remove()
    real = (moved - clean) @ encoder.T

    def slope(rows):
        predicted = (write @ rows.T).expand_as(real)
        return float((real * predicted).sum() / (predicted * predicted).sum())

    assert 0.85 < slope(output_encoder(att, encoder, scales)) < 1.1
    assert slope(encoder) < 0.7
