"""One block's attention weights, per head, from a Hugging Face ESM-2 or BERT-style model, and the
attention pattern they produce.

ESM-2 is pre-LN: the block reads ``LayerNorm(x)`` (``attention.LayerNorm``) and adds its output to
``x``; queries are scaled by ``1/sqrt(d_head)`` and rotated by rotary embeddings (HF's
``rotate_half``, frequency ``inv_freq[m]`` for the dimension pair ``(m, m + d_head/2)``). BERT is
post-LN: the block reads ``x`` itself and positions are absolute (already in ``x``), so there is no
rotation and no pre-attention norm, but a head's write passes two norms (``attention.output`` and
``output`` LayerNorm) before it reaches the block's output; `post_norms` names them. With rotary embeddings the score of a query at ``i`` and a key
at ``j`` is ``q_i . R((j - i) f) k_j`` for the un-rotated q, k: it depends only on the offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BlockAttention:
    """Block ``block``'s (1-based: its output is layer ``block``) attention, split by head.

    W_Q, W_K, W_V: (n_heads, d_head, d_model); b_Q, b_K, b_V: (n_heads, d_head); W_O: (n_heads,
    d_model, d_head). ln_weight, ln_bias: the pre-attention LayerNorm (None: the block reads the
    stream as it is). inv_freq: rotary frequencies (d_head / 2,), None for absolute positions.
    """

    block: int
    W_Q: torch.Tensor
    b_Q: torch.Tensor
    W_K: torch.Tensor
    b_K: torch.Tensor
    W_V: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor
    ln_weight: torch.Tensor | None
    ln_bias: torch.Tensor | None
    ln_eps: float
    inv_freq: torch.Tensor | None
    post_norms: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[1]

    @property
    def scale(self) -> float:
        return self.d_head ** -0.5

    @property
    def rotary(self) -> bool:
        return self.inv_freq is not None

    def to(self, device) -> "BlockAttention":
        moved = {name: value.to(device) if isinstance(value, torch.Tensor) else value
                 for name, value in vars(self).items()}
        moved["inv_freq"] = self.inv_freq  # rotations move it where they need it
        moved["post_norms"] = [(w.to(device), b.to(device)) for w, b in self.post_norms]
        return BlockAttention(**moved)

    def layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        """What the heads read of the stream ``x`` (..., d_model)."""
        if self.ln_weight is None:
            return x
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), self.ln_weight, self.ln_bias, self.ln_eps)

    def project(self, ln_x: torch.Tensor, which: str) -> torch.Tensor:
        """Queries, keys or values (``which`` in Q, K, V) of ``ln_x`` (..., d_model): (..., n_heads,
        d_head), un-rotated, biases included."""
        weight, bias = getattr(self, f"W_{which}"), getattr(self, f"b_{which}")
        return torch.einsum("...d,hed->...he", ln_x, weight) + bias


def rotate(x: torch.Tensor, offset, inv_freq: torch.Tensor) -> torch.Tensor:
    """``R(offset * f) x`` on the last axis (d_head), HF's rotary convention: the pair ``(m, m +
    d_head/2)`` turns by ``offset * inv_freq[m]``. ``offset`` is a number or a tensor that
    broadcasts against ``x`` without its last axis."""
    offset = torch.as_tensor(offset, dtype=torch.float32, device=x.device)
    angle = offset.unsqueeze(-1) * inv_freq.to(x.device)
    cos, sin = angle.cos(), angle.sin()
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def post_norm_modules(model, block: int) -> list[torch.nn.LayerNorm]:
    """The LayerNorms a head's write of block ``block`` passes before the block's output: BERT's
    two post-LNs; none for ESM-2 (pre-LN)."""
    layer = model._blocks[block - 1]
    if getattr(layer.attention, "LayerNorm", None) is not None:
        return []
    return [layer.attention.output.LayerNorm, layer.output.LayerNorm]


def block_attention(model, block: int) -> BlockAttention:
    """Block ``block`` (1..n_layers) of an `HFMaskedLM` (ESM-2 or BERT-style). The last block of a
    model with a final norm (ESM-2: layer n_layers is read after it) is refused: the SAE there
    reads the normed stream, which the circuits leave out."""
    blocks = model._blocks
    if not 1 <= block <= len(blocks):
        raise ValueError(f"{model.name} has blocks 1..{len(blocks)}; got block {block}")
    if block == len(blocks) and model._final_norm is not None:
        raise ValueError(f"{model.name}: layer {block} is read after the final norm; the head analysis covers blocks "
                         f"1..{block - 1}")
    attention = blocks[block - 1].attention
    self_attention, dense = attention.self, attention.output.dense
    n_heads = model.module.config.num_attention_heads
    d_model = model.d_model
    d_head = d_model // n_heads

    def split(linear):
        weight = linear.weight.detach().float().reshape(n_heads, d_head, d_model)
        bias = linear.bias.detach().float().reshape(n_heads, d_head) if linear.bias is not None else \
            torch.zeros(n_heads, d_head)
        return weight, bias

    W_Q, b_Q = split(self_attention.query)
    W_K, b_K = split(self_attention.key)
    W_V, b_V = split(self_attention.value)
    W_O = dense.weight.detach().float().reshape(d_model, n_heads, d_head).permute(1, 0, 2).contiguous()
    norm = getattr(attention, "LayerNorm", None)  # ESM-2's pre-attention norm; BERT's sits in attention.output
    position_type = getattr(model.module.config, "position_embedding_type", "absolute")
    inv_freq = None
    if position_type == "rotary":
        rotary = getattr(model.module.base_model, "rotary_embeddings", None) or self_attention.rotary_embeddings
        inv_freq = rotary.inv_freq.detach().float().cpu()
    elif position_type != "absolute":
        raise ValueError(f"{model.name}: position_embedding_type {position_type!r} is not supported (rotary or "
                         "absolute); relative-key attention adds terms the feature circuits leave out")
    return BlockAttention(
        block=block, W_Q=W_Q, b_Q=b_Q, W_K=W_K, b_K=b_K, W_V=W_V, b_V=b_V, W_O=W_O,
        ln_weight=None if norm is None else norm.weight.detach().float(),
        ln_bias=None if norm is None else norm.bias.detach().float(),
        ln_eps=1e-5 if norm is None else norm.eps,
        inv_freq=inv_freq,
        post_norms=[(norm.weight.detach().float(), norm.bias.detach().float()) for norm in post_norm_modules(model, block)],
    )


def attention_pattern(att: BlockAttention, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The heads' attention (batch, n_heads, query, key) on the block input ``x`` (batch, tokens,
    d_model), padding keys masked: what HF's ``output_attentions`` reports for this block."""
    ln_x = att.layer_norm(x)
    q = att.project(ln_x, "Q").transpose(1, 2) * att.scale  # (batch, heads, tokens, d_head)
    k = att.project(ln_x, "K").transpose(1, 2)
    if att.rotary:
        positions = torch.arange(x.shape[1], device=x.device)
        q, k = rotate(q, positions, att.inv_freq), rotate(k, positions, att.inv_freq)
    scores = q @ k.transpose(-1, -2)
    scores = scores.masked_fill(~attention_mask[:, None, None, :].bool(), float("-inf"))
    return scores.softmax(-1)
