"""OV and QK circuits of one head in SAE features (METHODS.md section 12).

SAE A reads the stream entering the block (layer l - 1), SAE B the stream it writes (layer l).
Latent a of A adds ``z_a * d_a`` to the stream (``d_a`` its decoder row in input units); the heads
read ``LayerNorm(x) = gamma * (x - mean(x)) / sigma(x) + beta``, which is linear in x but for the
per-token scale ``1/sigma``: here that scale is its mean over a reference set of tokens (stated in
the outputs), so latent a enters the heads as ``u_a = gamma * centre(d_a) / sigma_ref`` and what
does not depend on the latents (A's ``b_pre``, the LN bias) as one constant pseudo-feature ``c``.
Then, per head h:

    OV[b, a]   = e_b . W_O^h W_V^h u_a                      (e_b: B's encoder row, per input unit)
    QK_d[a, b] = (W_Q^h u_a)^T R_d (W_K^h u_b) / sqrt(d_head)   (d = key - query offset; R_0 = I
                                                                 for absolute-position models)

The query and key biases and ``W^h c`` are the constant pseudo-feature's terms. BERT-style blocks
read the stream without a norm (gamma 1, no centring, sigma_ref 1), but their write passes two
post-LNs before the block's output, where B reads it: B's encoder rows are taken back through
both, linearised the same way (their reference 1/sigma; the feed-forward's residual path taken as
identity, its own contribution left out), `output_encoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from protsae.heads.weights import BlockAttention, rotate

CONSTANT = -1
"""The latent index tables use for the constant pseudo-feature (b_pre, LN bias, Q/K biases)."""


def sae_input_maps(sae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(decoder rows, offset, encoder rows) of a protsae SAE in the units of the stream it reads:
    ``decode(z) = z @ decoder + offset`` and ``pre_acts(x) = x @ encoder.T + const``."""
    if getattr(sae.cfg, "standardize_tokens", False):
        raise ValueError("an SAE that standardises each token (InterProt's published SAEs) is not linear in the "
                         "stream; the head analysis needs SAEs trained by protsae (heads.sweep)")
    scale = sae.input_scale.detach().float()
    return (sae.W_dec.detach().float() / scale, sae.b_pre.detach().float() / scale,
            sae.W_enc.detach().float() * scale)


def reference_inv_sigma(att: BlockAttention, x: torch.Tensor) -> float:
    """Mean over the tokens ``x`` (n, d_model) of the pre-attention norm's ``1/sigma`` (1 without
    a norm)."""
    if att.ln_weight is None:
        return 1.0
    x = x.double()
    variance = x.var(-1, unbiased=False)
    return float((variance + att.ln_eps).rsqrt().mean())


@dataclass
class FeatureInputs:
    """SAE A's latents as the block's heads read them: ``directions`` (n_latents, d_model) = u_a,
    ``constant`` (d_model,) = c, with the reference scale ``inv_sigma`` folded in."""

    directions: torch.Tensor
    constant: torch.Tensor
    inv_sigma: float

    def stream(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """What the heads read (n, d_model) of tokens whose A-codes are ``values``/``indices`` (n, k)."""
        dense = torch.zeros(values.shape[0], self.directions.shape[0], device=values.device)
        dense.scatter_add_(1, indices, values.float())
        return dense @ self.directions + self.constant


def feature_inputs(att: BlockAttention, sae_a, reference: torch.Tensor) -> FeatureInputs:
    """SAE A's latents folded through the block's pre-attention norm; ``reference`` (n, d_model):
    tokens of the stream that set ``1/sigma``."""
    decoder, offset, _ = sae_input_maps(sae_a)
    inv_sigma = reference_inv_sigma(att, reference)
    if att.ln_weight is None:
        return FeatureInputs(decoder, offset, inv_sigma)
    gamma, beta = att.ln_weight.float(), att.ln_bias.float()
    centre = lambda w: w - w.mean(-1, keepdim=True)  # noqa: E731
    return FeatureInputs(gamma * centre(decoder) * inv_sigma, gamma * centre(offset) * inv_sigma + beta, inv_sigma)


def output_encoder(att: BlockAttention, encoder_b: torch.Tensor, post_inv_sigma: list[float]) -> torch.Tensor:
    """SAE B's encoder rows (n, d_model) as read from the heads' write: through each post-norm
    ``v -> s * gamma * centre(v)`` (reference scale s), last norm first; unchanged for pre-LN
    blocks."""
    if len(post_inv_sigma) != len(att.post_norms):
        raise ValueError(f"{len(att.post_norms)} post-norms but {len(post_inv_sigma)} reference scales")
    rows = encoder_b
    for (gamma, _), scale in zip(reversed(att.post_norms), reversed(post_inv_sigma)):
        weighted = rows * gamma
        rows = scale * (weighted - weighted.mean(-1, keepdim=True))
    return rows


def ov_matrix(att: BlockAttention, head: int, inputs: FeatureInputs, encoder_b: torch.Tensor,
              sources: torch.Tensor | None = None) -> torch.Tensor:
    """OV[b, a] (n_latents_B, n_sources): what source latent a, attended to, adds to each of B's
    pre-activations, per unit of a's activation (all A's latents when ``sources`` is None)."""
    u = inputs.directions if sources is None else inputs.directions[sources]
    written = (u @ att.W_V[head].T) @ att.W_O[head].T  # (n_sources, d_model)
    return encoder_b @ written.T


def qk_vectors(att: BlockAttention, head: int, inputs: FeatureInputs, latents: torch.Tensor | None = None):
    """Query and key vectors (n, d_head) of A's latents (and, last row, of the constant
    pseudo-feature with the Q/K biases) for head ``head``; the query carries 1/sqrt(d_head)."""
    u = inputs.directions if latents is None else inputs.directions[latents]
    q = u @ att.W_Q[head].T
    k = u @ att.W_K[head].T
    q_const = inputs.constant @ att.W_Q[head].T + att.b_Q[head]
    k_const = inputs.constant @ att.W_K[head].T + att.b_K[head]
    return torch.cat([q, q_const[None]]) * att.scale, torch.cat([k, k_const[None]])


def qk_matrix(att: BlockAttention, head: int, inputs: FeatureInputs, offset: int,
              latents: torch.Tensor | None = None) -> torch.Tensor:
    """QK_d[a, b] (n + 1, n + 1) for query latent a and key latent b at key offset ``offset``
    (the last row and column: the constant pseudo-feature). Absolute-position models: the
    content term, the same at every offset."""
    q, k = qk_vectors(att, head, inputs, latents)
    if att.rotary:
        k = rotate(k, offset, att.inv_freq)
    return q @ k.T
