"""The pieces that make SAE training fast: a dense encoder matmul with a sparse backward
(`SelectiveEncoder`), the kept latents as flat (token, latent, value) lists for ``embedding_bag``
(`SelectedLatents`), and the geometric median that initialises ``b_pre``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def geometric_median(points: torch.Tensor, n_iter: int = 50, eps: float = 1e-8) -> torch.Tensor:
    """Geometric median of ``points`` ``(n, d)`` by Weiszfeld iterations, ``(d,)``.

    Starts from the mean; each step re-weights the points by their inverse distance to the
    current estimate (distances floored at ``eps`` so a point on the estimate does not divide by 0).
    """
    points = points.double()
    median = points.mean(0)
    for _ in range(n_iter):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(eps)
        new_median = (weights[:, None] * points).sum(0) / weights.sum()
        converged = (new_median - median).norm() <= 1e-10 * (1.0 + median.norm())
        median = new_median
        if converged:
            break
    return median


def batch_fvu(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    total_variance = (x - x.mean(0)).pow(2).sum()
    return (x - x_hat).pow(2).sum() / total_variance.clamp_min(torch.finfo(x.dtype).tiny)


def matmul_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """bfloat16 (or the autocast dtype) while autocast is on for ``device``, else ``dtype``."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class SelectiveEncoder(torch.autograd.Function):
    """Encoder pre-activations of which only selected entries are used: dense forward, sparse
    backward.

    ``forward(x, weight, bias, select, compute_dtype)`` computes ``pre = x weight^T + bias``
    ``(batch, n_latents)`` in ``compute_dtype`` and calls ``select(pre)`` for a tuple of
    selections: int64 tensors of any shape holding flat indices into ``pre`` (``token *
    n_latents + latent``), each in token order once flattened. It returns the selected values
    (float32, shaped like their selection). The backward sees gradients only for those
    entries, so it skips the two dense matmuls autograd would run: the input gradient sums each
    token's selected encoder rows, and the weight gradient, non-zero only in the rows of
    selected latents, sums each latent's selected tokens (both by ``embedding_bag``, the latter
    with the entries grouped by latent). Both cost O(entries * d_model), deterministic on CPU.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, select: Callable, compute_dtype: torch.dtype):
        pre_acts = torch.addmm(bias.to(compute_dtype), x.to(compute_dtype), weight.to(compute_dtype).t())
        selections = tuple(select(pre_acts))
        flat_pre_acts = pre_acts.view(-1)
        ctx.save_for_backward(x, weight, *selections)
        return tuple(flat_pre_acts[selection].float() for selection in selections)

    @staticmethod
    def backward(ctx, *grads):
        x, weight, *selections = ctx.saved_tensors
        batch, n_latents = x.shape[0], weight.shape[0]
        entries = [
            (selection.reshape(-1), grad.reshape(-1).to(weight.dtype))
            for selection, grad in zip(selections, grads)
            if grad is not None
        ]
        flat = torch.cat([selection for selection, _ in entries])
        grad_pre = torch.cat([grad for _, grad in entries])
        tokens = flat // n_latents
        latents = flat - tokens * n_latents
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x, dtype=weight.dtype)
            for selection, grad in entries:
                selection_tokens = selection // n_latents
                grad_x += F.embedding_bag(
                    selection - selection_tokens * n_latents, weight, group_offsets(selection_tokens, batch),
                    per_sample_weights=grad, mode="sum",
                )
            grad_x = grad_x.to(x.dtype)
        if ctx.needs_input_grad[1]:
            by_latent = latents.argsort(stable=True)
            grad_weight = F.embedding_bag(
                tokens[by_latent], x.to(weight.dtype), group_offsets(latents, n_latents),
                per_sample_weights=grad_pre[by_latent], mode="sum",
            )
        if ctx.needs_input_grad[2]:
            grad_bias = torch.bincount(latents, weights=grad_pre, minlength=n_latents).to(weight.dtype)
        return grad_x, grad_weight, grad_bias, None, None


def group_offsets(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """First position of each group in a sequence sorted by group (``embedding_bag`` offsets)."""
    counts = torch.bincount(groups, minlength=n_groups)
    return counts.cumsum(0) - counts


class SelectedLatents(NamedTuple):
    """The kept latents of a batch as flat entries in token order."""

    values: torch.Tensor
    """``(entries,)`` float, >= 0."""
    latents: torch.Tensor
    """``(entries,)`` int64."""
    offsets: torch.Tensor
    """``(batch,)`` int64: each token's first entry."""
    padded_values: torch.Tensor
    """``(batch, slots)``: each token's values, zero-padded (for `ForwardOutput`)."""
    padded_latents: torch.Tensor
    """``(batch, slots)`` int64."""

    @staticmethod
    def per_token(values: torch.Tensor, latents: torch.Tensor) -> "SelectedLatents":
        """From ``(batch, slots)`` values and latent indices."""
        batch, slots = latents.shape
        offsets = torch.arange(0, batch * slots, slots, device=latents.device)
        return SelectedLatents(values.reshape(-1), latents.reshape(-1), offsets, values, latents)

    @staticmethod
    def from_flat(values: torch.Tensor, flat: torch.Tensor, batch: int, n_latents: int) -> "SelectedLatents":
        """From ``(entries,)`` values at flat indices ``token * n_latents + latent`` (sorted)."""
        tokens = flat // n_latents
        latents = flat - tokens * n_latents
        offsets = group_offsets(tokens, batch)
        slots = torch.arange(len(flat), device=flat.device) - offsets[tokens]
        width = max(1, int(slots.max()) + 1) if len(flat) else 1
        padded_values = values.new_zeros(batch, width).index_put((tokens, slots), values)
        padded_latents = latents.new_zeros(batch, width).index_put((tokens, slots), latents)
        return SelectedLatents(values, latents, offsets, padded_values, padded_latents)

    def l0(self) -> torch.Tensor:
        return (self.values > 0).sum() / len(self.offsets)

    def fired(self, n_latents: int) -> torch.Tensor:
        counts = torch.zeros(n_latents, dtype=torch.int32, device=self.latents.device)
        return counts.index_add_(0, self.latents, (self.values > 0).int()) > 0

