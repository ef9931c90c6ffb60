"""What a block's heads do on real sequences, set against what their feature circuits predict
(METHODS.md section 12), in one pass over the block's input.

Offset profiles: for every residue query, the attention it gives residue keys at offsets
-window..window, renormalised over that window (measured: the model's own attention pattern;
predicted: the softmax of the QK scores of the query's and keys' A-codes, constant pseudo-feature
included). ``measured_raw`` keeps the unnormalised attention, whose sum is the share of a query's
attention that stays within the window.

OV with the attention pattern frozen: each source latent a is removed (delta form) from the
block's input wherever it is active; the change of the heads' output, through the real per-token
norm and the frozen pattern, is read with B's encoder rows and summed over residue queries. Divided
by the attention-weighted amount of a (sum over queries i and keys j of A[i, j] z_a(j)), it is the
measured counterpart of OV[b, a]; they differ by what the reference norm scale leaves out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from protsae.activations.batches import token_budget_batches
from protsae.heads.features import FeatureInputs
from protsae.heads.weights import (
    BlockAttention,
    attention_pattern,
    post_norm_modules,
    rotate,
)


@dataclass
class Behaviour:
    """Sums over the residue queries of the sequences (``n_queries`` of them).

    predicted, measured, measured_raw: (n_heads, n_offsets) mean profiles. ov_measured:
    (n_heads, n_sources, n_latents_B) measured OV per unit of source; ov_amount: (n_heads,
    n_sources) the attention-weighted amount of each source (0: never active)."""

    predicted: torch.Tensor
    measured: torch.Tensor
    measured_raw: torch.Tensor
    n_queries: int
    ov_measured: torch.Tensor
    ov_amount: torch.Tensor


def block_inputs(model, block: int, sequences: Sequence[str], max_tokens: int, progress: bool = False):
    """[(tokens, block input (batch, tokens, d_model))] over ``sequences`` in token-budget batches."""
    batches = []
    for index in tqdm(token_budget_batches([len(s) for s in sequences], max_tokens), desc=f"block {block} input",
                      unit="batch", disable=not progress, mininterval=2.0):
        tokens = model.tokenize([sequences[i] for i in index])
        batches.append((tokens, model.hidden_states(tokens, [block - 1])[block - 1]))
    return batches


@torch.no_grad()
def block_codes(sae, batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SAE ``sae``'s (values, indices) of each batch's residues (`block_inputs`), in the order
    ``x[tokens.residue_mask]`` gives them: encoded once, read by the source choice and the pass."""
    return [sae.encode(x[tokens.residue_mask]) for tokens, x in batches]


@torch.no_grad()
def post_norm_scales(model, block: int, batches) -> list[float]:
    """Per norm of `post_norm_modules` (BERT's post-LNs), the mean over the residues of ``batches``
    of its ``1/sigma``: the reference scales folded into SAE B's encoder rows."""
    modules = post_norm_modules(model, block)
    if not modules:
        return []
    sums, count, seen = [0.0] * len(modules), 0, {}

    def hook_for(i, module):
        def hook(_, args):
            seen[i] = (args[0].double().var(-1, unbiased=False) + module.eps).rsqrt()
        return hook

    handles = [module.register_forward_pre_hook(hook_for(i, module)) for i, module in enumerate(modules)]
    try:
        for tokens, _ in batches:
            model.hidden_states(tokens, [block])
            for i in range(len(modules)):
                sums[i] += float(seen[i][tokens.residue_mask].sum())
            count += int(tokens.residue_mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    return [total / count for total in sums]


def _shifted(x: torch.Tensor, offset: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` read at column + offset along ``axis`` (clamped), and which columns stay in range."""
    n = x.shape[axis]
    columns = torch.arange(n, device=x.device) + offset
    inside = (columns >= 0) & (columns < n)
    return x.index_select(axis, columns.clamp(0, n - 1)), inside


@torch.no_grad()
def head_behaviour(att: BlockAttention, codes, inputs: FeatureInputs, decoder_a: torch.Tensor,
                   encoder_b: torch.Tensor, batches, sources: Sequence[int], window: int = 8,
                   progress: bool = False) -> Behaviour:
    """Profiles and frozen-pattern OV of every head of ``att`` over ``batches`` (`block_inputs`).

    codes: SAE A's codes of the batches (`block_codes`). decoder_a: SAE A's decoder rows in stream units (for the removal); encoder_b: SAE B's encoder
    rows as the heads' write reaches them (`features.output_encoder`)."""
    offsets = range(-window, window + 1)
    n_heads, n_off = att.n_heads, len(offsets)
    predicted = torch.zeros(n_heads, n_off, dtype=torch.float64)
    measured = torch.zeros_like(predicted)
    measured_raw = torch.zeros_like(predicted)
    ov_measured = torch.zeros(n_heads, len(sources), encoder_b.shape[0], dtype=torch.float64)
    ov_amount = torch.zeros(n_heads, len(sources), dtype=torch.float64)
    n_queries = 0
    for (tokens, x), (values, indices) in tqdm(zip(batches, codes), total=len(batches),
                                               desc=f"block {att.block} heads", unit="batch",
                                               disable=not progress, mininterval=2.0):
        residues = tokens.residue_mask
        pattern = attention_pattern(att, x, tokens.attention_mask)  # (batch, heads, query, key)
        x_res = x[residues]
        stream = torch.zeros_like(x)
        stream[residues] = inputs.stream(values, indices).to(x.dtype)
        q = att.project(stream, "Q") * att.scale  # (batch, tokens, heads, d_head)
        k = att.project(stream, "K")
        scores, attention = [], []
        for offset in offsets:
            k_at, inside = _shifted(k, offset, 1)
            key_is_residue, _ = _shifted(residues, offset, 1)
            valid = residues & key_is_residue & inside
            if att.rotary:
                k_at = rotate(k_at, offset, att.inv_freq)
            scores.append(((q * k_at).sum(-1)).masked_fill(~valid[..., None], float("-inf")))
            diagonal = pattern.diagonal(offset, dim1=2, dim2=3)  # A[b, h, i, i + offset], a view
            padding = (0, offset) if offset >= 0 else (-offset, 0)  # back to one entry per query i
            on_diagonal = torch.nn.functional.pad(diagonal, padding).permute(0, 2, 1)  # (batch, tokens, heads)
            attention.append(on_diagonal * valid[..., None])
        scores = torch.stack(scores, -1)[residues]  # (n, heads, offsets)
        attention = torch.stack(attention, -1)[residues]
        predicted += scores.softmax(-1).sum(0).double().cpu()
        # A query whose attention all but leaves the window (e.g. onto CLS) keeps a zero profile
        # rather than 0 / 0.
        measured += (attention / attention.sum(-1, keepdim=True).clamp_min(1e-30)).sum(0).double().cpu()
        measured_raw += attention.sum(0).double().cpu()
        n_queries += int(residues.sum())

        # Frozen-pattern OV: how much attention each residue key receives from residue queries.
        received = (pattern * residues[:, None, :, None]).sum(2).permute(0, 2, 1)[residues]  # (n, heads)
        clean = att.layer_norm(x_res)
        for s, latent in enumerate(sources):
            z = (values * (indices == latent)).sum(-1).float()
            active = z > 0
            if not active.any():
                continue
            without = x_res[active] - z[active, None] * decoder_a[latent]
            delta = clean[active] - att.layer_norm(without)  # what a's presence adds to the heads' input
            weighted = torch.einsum("mh,md->hd", received[active], delta)
            written = torch.einsum("he,hde->hd", torch.einsum("hd,hed->he", weighted, att.W_V), att.W_O)
            ov_measured[:, s] += (written @ encoder_b.T).double().cpu()
            ov_amount[:, s] += (received[active] * z[active, None]).sum(0).double().cpu()
    if n_queries == 0:
        raise ValueError("no residues to analyse the heads on")
    per_unit = ov_measured / ov_amount.clamp_min(1e-30)[..., None]
    return Behaviour(predicted / n_queries, measured / n_queries, measured_raw / n_queries, n_queries,
                     per_unit, ov_amount)
