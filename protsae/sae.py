"""TopK sparse autoencoder (Gao et al. 2024), as used by InterProt.

    z     = ReLU(TopK(W_enc (x - b_pre) + b_enc))
    x_hat = W_dec^T z + b_pre

with unit-norm decoder rows, ``b_pre`` initialised at the geometric median of a sample, and the
AuxK loss that lets dead latents reconstruct the residual. With ``normalize_input`` the model
multiplies its input by a scalar ``input_scale`` (estimated once, so that the scaled activations
have unit mean squared norm) and divides its output by it; ``b_pre`` and the latents live in the
scaled space, and the checkpoint carries the scale.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from protsae.utils import atomic_path, write_json

FORMAT_VERSION = 1
WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class SAEConfig:
    """Architecture and sparsity of one SAE."""

    d_model: int
    """Width of the residual stream it reads."""

    n_latents: int = 4096
    """Dictionary size (the paper's "width")."""

    k: int = 64
    """Latents kept per token."""

    variant: Literal["topk"] = "topk"
    """Sparsity mechanism; only TopK is implemented (BatchTopK, Matryoshka and ReLU+L1 later)."""

    k_aux: int | None = None
    """Dead latents used by the AuxK loss; default ``d_model // 2`` (Gao et al.)."""

    dead_tokens_threshold: int = 10_000_000
    """A latent is dead once it has not fired for this many training tokens."""

    auxk_coef: float = 1 / 32
    """Weight of the AuxK loss."""

    normalize_input: bool = False
    """Scale inputs to unit mean squared norm with a scalar estimated at initialisation."""

    seed: int = 0
    """Seed of the weight initialisation."""

    def __post_init__(self):
        if self.variant != "topk":
            raise ValueError(f"SAE variant {self.variant!r} is not implemented (only 'topk')")
        if self.k_aux is None:
            self.k_aux = self.d_model // 2
        if not 0 < self.k <= self.n_latents:
            raise ValueError(f"k={self.k} must be in [1, n_latents={self.n_latents}]")


class ForwardOutput(NamedTuple):
    """What one forward pass computes; every quantity the trainer logs."""

    sae_out: torch.Tensor
    """Reconstruction x_hat, ``(batch, d_model)``, in input units."""

    latent_acts: torch.Tensor
    """Values of the k kept latents (ReLU applied, so some may be 0), ``(batch, k)``."""

    latent_indices: torch.Tensor
    """Indices of the k kept latents, ``(batch, k)`` int64."""

    fvu: torch.Tensor
    """Fraction of variance unexplained over the batch, scalar."""

    mse: torch.Tensor
    """Squared error summed over d_model, mean over tokens, in input units, scalar."""

    auxk_loss: torch.Tensor
    """AuxK loss (residual FVU reached by the top k_aux dead latents); 0 when none is dead."""


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


def _fvu(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    total_variance = (x - x.mean(0)).pow(2).sum()
    return (x - x_hat).pow(2).sum() / total_variance.clamp_min(torch.finfo(x.dtype).tiny)


class TopKSAE(nn.Module):
    """TopK SAE: parameters ``W_enc`` and ``W_dec`` ``(n_latents, d_model)``, ``b_enc``
    ``(n_latents,)``, ``b_pre`` ``(d_model,)``; buffer ``input_scale`` (scalar)."""

    def __init__(self, cfg: SAEConfig, device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg = cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        decoder = torch.randn(cfg.n_latents, cfg.d_model, generator=generator)
        decoder /= decoder.norm(dim=1, keepdim=True)
        # Tied initialisation: the encoder starts as the decoder's transpose (Gao et al.).
        self.W_enc = nn.Parameter(decoder.clone().to(device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.n_latents, device=device))
        self.W_dec = nn.Parameter(decoder.to(device))
        self.b_pre = nn.Parameter(torch.zeros(cfg.d_model, device=device))
        self.register_buffer("input_scale", torch.ones((), device=device))

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @torch.no_grad()
    def init_input_scale(self, sample: torch.Tensor) -> None:
        """Set ``input_scale`` so that ``sample`` ``(n, d_model)`` scaled has mean squared norm 1."""
        mean_sq_norm = sample.double().pow(2).sum(-1).mean()
        self.input_scale.copy_(mean_sq_norm.rsqrt())

    @torch.no_grad()
    def init_b_pre(self, sample: torch.Tensor) -> None:
        """Set ``b_pre`` to the geometric median of ``sample`` ``(n, d_model)`` (in scaled space)."""
        scaled = sample.to(self.device).float() * self.input_scale
        self.b_pre.copy_(geometric_median(scaled).to(self.b_pre.dtype))

    @torch.no_grad()
    def initialize(self, sample: torch.Tensor) -> None:
        """Data-dependent initialisation: the input scale (if ``normalize_input``), then ``b_pre``."""
        if self.cfg.normalize_input:
            self.init_input_scale(sample)
        self.init_b_pre(sample)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``W_enc (x * scale - b_pre) + b_enc``, ``(batch, n_latents)``."""
        # The input is centred before the matmul (cancellation would cost precision under bf16),
        # but with b_pre detached, so autograd skips the (batch, n_latents) x (n_latents, d_model)
        # product that only b_pre's gradient needs. The bias correction is exactly zero and
        # restores that gradient, -W_enc^T sum_t grad_t, with one matrix-vector product.
        centred = x * self.input_scale - self.b_pre.detach()
        b_pre_grad_path = F.linear(self.b_pre - self.b_pre.detach(), self.W_enc.detach())
        return F.linear(centred, self.W_enc, self.b_enc - b_pre_grad_path)

    def _select(self, pre_acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        top_vals, top_idx = pre_acts.topk(k, dim=-1, sorted=False)
        return top_vals.relu(), top_idx

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k kept latents of ``x`` ``(batch, d_model)``: values ``(batch, k)`` (>= 0) and
        indices ``(batch, k)`` int64."""
        return self._select(self.pre_acts(x), self.cfg.k)

    def _decode_scaled(self, top_vals: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """Sum of the selected decoder rows weighted by their values, without ``b_pre``."""
        return F.embedding_bag(
            top_idx, self.W_dec, per_sample_weights=top_vals.to(self.W_dec.dtype), mode="sum"
        )

    def decode(self, top_vals: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``(batch, d_model)`` in input units from the kept latents; only the
        selected decoder rows are read."""
        return (self._decode_scaled(top_vals, top_idx) + self.b_pre) / self.input_scale

    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> ForwardOutput:
        """Encode and decode ``x`` ``(batch, d_model)``.

        ``dead_mask`` ``(n_latents,)`` bool marks dead latents; when any is set, the AuxK loss
        reconstructs the residual ``x - x_hat`` (``x_hat`` detached) from the top ``k_aux`` dead
        latents, decoded without ``b_pre``, and is normalised by the residual's variance.
        """
        x = x.to(self.W_dec.dtype)
        pre_acts = self.pre_acts(x)
        top_vals, top_idx = self._select(pre_acts, self.cfg.k)
        sae_out = self.decode(top_vals, top_idx)

        fvu = _fvu(x, sae_out)
        mse = (x - sae_out).pow(2).sum(-1).mean()

        if dead_mask is not None:
            # Alive latents are masked to -inf; when fewer than k_aux are dead the surplus picks
            # are -inf, which the ReLU turns into 0, so no device sync is needed to count them.
            dead_pre_acts = pre_acts.masked_fill(~dead_mask, float("-inf"))
            aux_vals, aux_idx = self._select(dead_pre_acts, min(self.cfg.k_aux, self.cfg.n_latents))
            residual = (x - sae_out.detach()) * self.input_scale
            residual_hat = self._decode_scaled(aux_vals, aux_idx)
            auxk_loss = torch.where(dead_mask.any(), _fvu(residual, residual_hat), 0.0)
        else:
            auxk_loss = sae_out.new_zeros(())

        return ForwardOutput(sae_out, top_vals, top_idx, fvu, mse, auxk_loss)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Rescale every decoder row to unit norm."""
        norm = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec.div_(norm.clamp_min(torch.finfo(self.W_dec.dtype).eps))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project each decoder row's gradient onto the plane orthogonal to the row, so that an
        optimiser step changes the direction of the row, not (to first order) its norm."""
        if self.W_dec.grad is None:
            return
        direction = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(
            torch.finfo(self.W_dec.dtype).eps
        )
        parallel = (self.W_dec.grad * direction).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * direction)

    def save(self, path: str | os.PathLike, extra_config: dict | None = None) -> None:
        """Write ``sae.safetensors`` and ``config.json`` into directory ``path``, atomically.

        ``config.json`` holds every `SAEConfig` field, ``format_version``, ``input_scale`` and,
        under their own keys, the entries of ``extra_config`` (training settings, provenance).
        """
        path = Path(path)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
        config = {
            "format_version": FORMAT_VERSION,
            **asdict(self.cfg),
            "input_scale": float(self.input_scale),
            **(extra_config or {}),
        }
        write_json(path / CONFIG_FILE, config)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "TopKSAE":
        """Read an SAE written by `save`."""
        path = Path(path)
        config = json.loads((path / CONFIG_FILE).read_text())
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: SAE format version {version}, this code reads {FORMAT_VERSION}")
        cfg = SAEConfig(**{f.name: config[f.name] for f in fields(SAEConfig) if f.name in config})
        sae = cls(cfg, device=device)
        sae.load_state_dict(load_file(str(path / WEIGHTS_FILE), device=str(device)))
        return sae
