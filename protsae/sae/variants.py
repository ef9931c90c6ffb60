"""Sparse autoencoders on residual-stream activations: TopK (Gao et al. 2024, as used by
InterProt) and the peers' variants.

Every variant encodes ``x`` (``(batch, d_model)``, input units) the same way up to the sparsity
mechanism and decodes with its decoder rows ``W_dec`` plus ``b_pre``:

    pre   = W_enc (x * scale - b_pre) + b_enc
    x_hat = (W_dec^T z + b_pre) / scale

* ``topk``: z keeps the k largest entries of ``pre`` per token, ReLU after.
* ``batchtopk`` (Bussmann et al. 2024): in training, z keeps the ``batch * k`` largest ReLU'd
  entries over the whole batch, so tokens use a variable number of latents; at inference, the
  entries above a threshold (a bias-corrected running mean of the smallest kept activation per
  training batch, stored with the weights as ``threshold``), at most ``k_store`` per token.
* ``matryoshka`` (Nabeshima 2024; Bussmann et al. 2025): TopK or BatchTopK selection; the
  loss averages the FVU of the reconstructions from nested prefixes of the dictionary
  (``matryoshka_prefixes``, fractions of ``n_latents``), so early latents learn general features.
* ``relu_l1`` (InterPLM): z = ReLU(pre) without a top-k, loss FVU plus ``l1_coef`` times the
  decoder-norm-weighted L1 norm sum_j z_j ||W_dec_j|| (Anthropic, April 2024 update) with an
  unconstrained decoder. The saved model folds the decoder norms into the encoder (an exact
  reparametrisation), so saved decoder rows have unit norm like every other variant's. ``k`` is
  the number of latent slots `encode` keeps per token (the largest); `forward` decodes them all.

The TopK-type variants (all but ``relu_l1``) keep decoder rows at unit norm, remove the gradient
component parallel to each row before a step, and train dead latents with the AuxK loss. Their
encoder runs as one dense matmul (in bfloat16 under autocast) but a sparse backward
(`SelectiveEncoder`): only the rows of the selected latents get encoder gradients, and decoding
gathers only the selected decoder rows (``embedding_bag``), so the backward costs O(batch * k *
d_model) instead of O(batch * n_latents * d_model).

With ``normalize_input`` the model multiplies its input by a scalar ``input_scale`` (estimated
once, so that the scaled activations have unit mean squared norm) and divides its output by it;
``b_pre`` and the latents live in the scaled space, and the checkpoint carries the scale. With
``standardize_tokens`` (InterProt's published SAEs) each token is instead standardised over
d_model before encoding, ``(x - mean) / (std + 1e-5)``, and the reconstruction is mapped back
with ``* std + mean``; decoding then needs the token's statistics, so `decode` takes ``x``.

`load_sae` reads any variant written by `save`, and InterProt's own state dicts (`load_interprot`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from protsae.files import atomic_path, write_json
from protsae.sae.config import (
    CONFIG_FILE,
    FORMAT_VERSION,
    TOKEN_STD_EPS,
    VARIANTS,
    WEIGHTS_FILE,
    SAEConfig,
)
from protsae.sae.kernels import (
    SelectedLatents,
    SelectiveEncoder,
    batch_fvu,
    geometric_median,
    group_offsets,
    matmul_dtype,
)


class ForwardOutput(NamedTuple):
    """What one forward pass computes; every quantity the trainer logs."""

    sae_out: torch.Tensor
    """Reconstruction x_hat, ``(batch, d_model)``, in input units."""

    latent_acts: torch.Tensor
    """Values of the kept latents, ``(batch, slots)`` (>= 0; unused slots hold 0). Slots: k for
    TopK, the per-token candidates of a BatchTopK training batch, ``k_store`` at inference."""

    latent_indices: torch.Tensor
    """Indices of those latents, ``(batch, slots)`` int64."""

    fvu: torch.Tensor
    """Fraction of variance unexplained over the batch, scalar."""

    mse: torch.Tensor
    """Squared error summed over d_model, mean over tokens, in input units, scalar."""

    auxk_loss: torch.Tensor
    """AuxK loss (residual FVU reached by the top k_aux dead latents); 0 when none is dead."""

    loss: torch.Tensor
    """The variant's objective without AuxK: the FVU; the mean FVU over the nested prefixes
    (``matryoshka``); FVU plus the L1 penalty (``relu_l1``). Scalar."""

    l0: torch.Tensor
    """Mean number of non-zero latents per token, scalar."""

    fired: torch.Tensor
    """``(n_latents,)`` bool: latents non-zero on at least one token of the batch."""


class TopKSAE(nn.Module):
    """TopK SAE: parameters ``W_enc`` and ``W_dec`` ``(n_latents, d_model)``, ``b_enc``
    ``(n_latents,)``, ``b_pre`` ``(d_model,)``; buffer ``input_scale`` (scalar). The base of
    the other variants."""

    unit_norm_decoder = True
    """Whether training keeps decoder rows at unit norm (and projects their gradients)."""

    encode_truncates = False
    """Whether `encode` may drop latents that `forward` decodes (``decode(*encode(x))`` differs
    from ``forward(x).sae_out`` in eval mode)."""

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

    @property
    def k_store(self) -> int:
        """Latent slots per token returned by `encode`."""
        return self.cfg.k_store

    # Data-dependent initialisation.

    @torch.no_grad()
    def init_input_scale(self, sample: torch.Tensor) -> None:
        """Set ``input_scale`` so that ``sample`` ``(n, d_model)`` scaled has mean squared norm 1."""
        mean_sq_norm = sample.double().pow(2).sum(-1).mean()
        self.input_scale.copy_(mean_sq_norm.rsqrt())

    @torch.no_grad()
    def init_b_pre(self, sample: torch.Tensor) -> None:
        """Set ``b_pre`` to the geometric median of ``sample`` ``(n, d_model)`` (in model space)."""
        model_space, _, _ = self._to_model_space(sample.to(self.device).float())
        self.b_pre.copy_(geometric_median(model_space).to(self.b_pre.dtype))

    @torch.no_grad()
    def initialize(self, sample: torch.Tensor) -> None:
        """Data-dependent initialisation: the input scale (if ``normalize_input``), then ``b_pre``."""
        if self.cfg.normalize_input:
            self.init_input_scale(sample)
        self.init_b_pre(sample)

    # Input and output units.

    def _to_model_space(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``x`` in the space the latents live in, and each token's mean and std when tokens are
        standardised (else None)."""
        if self.cfg.standardize_tokens:
            mean = x.mean(-1, keepdim=True)
            centred = x - mean
            std = centred.std(-1, keepdim=True)
            return centred / (std + TOKEN_STD_EPS), mean, std
        return x * self.input_scale, None, None

    def _to_input_space(self, y: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.standardize_tokens:
            if mean is None:
                raise ValueError("this SAE standardises tokens: decoding needs the input x (decode(vals, idx, x=x))")
            return y * std + mean
        return y / self.input_scale

    def _token_stats(self, x: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if x is None or not self.cfg.standardize_tokens:
            return None, None
        _, mean, std = self._to_model_space(x.to(self.W_dec.dtype))
        return mean, std

    # Encoder.

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``W_enc (x * scale - b_pre) + b_enc``, ``(batch, n_latents)``,
        with plain autograd (dense backward)."""
        model_space, _, _ = self._to_model_space(x)
        # The input is centred before the matmul (cancellation would cost precision under bf16),
        # but with b_pre detached, so autograd skips the (batch, n_latents) x (n_latents, d_model)
        # product that only b_pre's gradient needs. The bias correction is exactly zero and
        # restores that gradient, -W_enc^T sum_t grad_t, with one matrix-vector product.
        centred = model_space - self.b_pre.detach()
        b_pre_grad_path = F.linear(self.b_pre - self.b_pre.detach(), self.W_enc.detach())
        return F.linear(centred, self.W_enc, self.b_enc - b_pre_grad_path)

    def _encode_selected(self, centred: torch.Tensor, select: Callable) -> tuple[torch.Tensor, ...]:
        """`SelectiveEncoder` on the centred input: the values of each selection."""
        compute_dtype = matmul_dtype(self.device, self.W_enc.dtype)
        return SelectiveEncoder.apply(centred, self.W_enc, self.b_enc, select, compute_dtype)

    @staticmethod
    def _per_token_flat(pre_acts: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Flat indices into ``pre_acts`` of per-token latent indices ``(batch, slots)``."""
        n_tokens, n_latents = pre_acts.shape
        return indices + torch.arange(0, n_tokens * n_latents, n_latents, device=indices.device)[:, None]

    def _select_inference(self, pre_acts: torch.Tensor) -> torch.Tensor:
        """Each token's top ``k_store`` latents, as flat indices ``(batch, k_store)``."""
        return self._per_token_flat(pre_acts, pre_acts.topk(self.k_store, dim=-1, sorted=False).indices)

    def _select_training(self, pre_acts: torch.Tensor, extras: dict) -> torch.Tensor:
        """The latents training keeps, as flat indices: TopK keeps each token's top k."""
        return self._per_token_flat(pre_acts, pre_acts.topk(self.cfg.k, dim=-1, sorted=False).indices)

    def _threshold_inference(self, vals: torch.Tensor) -> torch.Tensor:
        """Values kept at inference from the top ``k_store`` ReLU'd values (TopK: all of them)."""
        return vals

    def _update_threshold(self, extras: dict) -> None:
        """BatchTopK keeps its inference threshold up to date; TopK has none."""

    def _latents(
        self, centred: torch.Tensor, dead_mask: torch.Tensor | None
    ) -> tuple[SelectedLatents, torch.Tensor | None, torch.Tensor | None]:
        """Kept latents and, with ``dead_mask``, the AuxK latents (values, indices ``(batch,
        k_aux)``)."""
        training = self.training
        batch, n_latents = len(centred), self.cfg.n_latents
        selected: dict = {}

        def select(pre_acts: torch.Tensor) -> tuple[torch.Tensor, ...]:
            main = self._select_training(pre_acts, selected) if training else self._select_inference(pre_acts)
            selected["main"] = main
            if dead_mask is None:
                return (main,)
            # Alive latents are masked to -inf; when fewer than k_aux are dead the surplus picks
            # are alive latents, zeroed below, so no device sync is needed to count them.
            dead_pre_acts = pre_acts.masked_fill(~dead_mask, float("-inf"))
            aux = dead_pre_acts.topk(min(self.cfg.k_aux, n_latents), dim=-1, sorted=False).indices
            selected["aux"] = aux
            return main, self._per_token_flat(pre_acts, aux)

        values = self._encode_selected(centred, select)
        vals = values[0].relu()
        main = selected["main"]
        if training:
            self._update_threshold(selected)
        else:
            vals = self._threshold_inference(vals)
        if main.dim() == 2:
            codes = SelectedLatents.per_token(vals, main % n_latents)
        else:
            codes = SelectedLatents.from_flat(vals, main, batch, n_latents)
        if dead_mask is None:
            return codes, None, None
        aux_idx = selected["aux"]
        return codes, values[1].relu() * dead_mask[aux_idx], aux_idx

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept latents of ``x`` ``(batch, d_model)`` at inference: values ``(batch,
        k_store)`` float (>= 0, 0 in unused slots) and indices ``(batch, k_store)`` int64."""
        model_space, _, _ = self._to_model_space(x.to(self.W_dec.dtype))
        selected: dict = {}

        def select(pre_acts: torch.Tensor) -> tuple[torch.Tensor]:
            selected["indices"] = pre_acts.topk(self.k_store, dim=-1, sorted=False).indices
            return (self._per_token_flat(pre_acts, selected["indices"]),)

        (values,) = self._encode_selected(model_space - self.b_pre, select)
        return self._threshold_inference(values.relu()), selected["indices"]

    def select(self, pre_acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents the SAE keeps at inference from dense pre-activations ``(batch,
        n_latents)`` (`pre_acts`): values ``(batch, k_store)`` (>= 0) and indices, by the
        variant's own selection (top ``k_store``, then BatchTopK's threshold). `encode` is
        ``select(pre_acts(x))`` without the dense matrix, up to the matmul's rounding."""
        indices = pre_acts.topk(self.k_store, dim=-1, sorted=False).indices
        return self._threshold_inference(pre_acts.gather(-1, indices).relu()), indices

    # Decoder.

    def _decode_model_space(self, top_vals: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """Sum of the selected decoder rows weighted by their values, without ``b_pre``."""
        return F.embedding_bag(
            top_idx, self.W_dec, per_sample_weights=top_vals.to(self.W_dec.dtype), mode="sum"
        )

    def _decode_codes(self, codes: SelectedLatents) -> torch.Tensor:
        return F.embedding_bag(
            codes.latents, self.W_dec, codes.offsets, per_sample_weights=codes.values.to(self.W_dec.dtype), mode="sum"
        )

    def decode(self, top_vals: torch.Tensor, top_idx: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction ``(batch, d_model)`` in input units from kept latents; only the selected
        decoder rows are read. ``x``, the encoded input, is needed only by an SAE that
        standardises tokens (InterProt's), to map the reconstruction back to input units."""
        mean, std = self._token_stats(x)
        return self._to_input_space(self._decode_model_space(top_vals, top_idx) + self.b_pre, mean, std)

    def _reconstruction_loss(self, x: torch.Tensor, codes: SelectedLatents, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction in input units and the variant's reconstruction objective."""
        sae_out = self._to_input_space(self._decode_codes(codes) + self.b_pre, mean, std)
        return sae_out, batch_fvu(x, sae_out)

    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> ForwardOutput:
        """Encode and decode ``x`` ``(batch, d_model)``.

        In training mode the latents are selected as in training (BatchTopK over the batch);
        in eval mode as by `encode`. ``dead_mask`` ``(n_latents,)`` bool marks dead latents;
        when given, the AuxK loss reconstructs the residual ``x - x_hat`` (``x_hat`` detached)
        from the top ``k_aux`` dead latents, decoded without ``b_pre``, and is normalised by the
        residual's variance.
        """
        x = x.to(self.W_dec.dtype)
        model_space, mean, std = self._to_model_space(x)
        codes, aux_vals, aux_idx = self._latents(model_space - self.b_pre, dead_mask)
        sae_out, loss = self._reconstruction_loss(x, codes, mean, std)

        fvu = batch_fvu(x, sae_out)
        mse = (x - sae_out).pow(2).sum(-1).mean()
        if aux_vals is not None:
            residual = self._residual_to_model_space(x - sae_out.detach(), std)
            residual_hat = self._decode_model_space(aux_vals, aux_idx)
            auxk_loss = torch.where(dead_mask.any(), batch_fvu(residual, residual_hat), 0.0)
        else:
            auxk_loss = sae_out.new_zeros(())
        return ForwardOutput(
            sae_out, codes.padded_values, codes.padded_latents, fvu, mse, auxk_loss, loss,
            codes.l0(), codes.fired(self.cfg.n_latents),
        )

    def _residual_to_model_space(self, residual: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.standardize_tokens:
            return residual / (std + TOKEN_STD_EPS)
        return residual * self.input_scale

    # Constraints and checkpoints.

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Rescale every decoder row to unit norm."""
        norm = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec.div_(norm.clamp_min(torch.finfo(self.W_dec.dtype).eps))

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """Give every decoder row unit norm without changing the function: latent j's encoder
        row and bias are multiplied by the row's norm (exact for ReLU-type encoders)."""
        norm = self.W_dec.norm(dim=1).clamp_min(torch.finfo(self.W_dec.dtype).eps)
        self.W_enc.mul_(norm[:, None])
        self.b_enc.mul_(norm)
        self.W_dec.div_(norm[:, None])

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project each decoder row's gradient onto the plane orthogonal to the row, so that an
        optimiser step changes the direction of the row, not (to first order) its norm."""
        if self.W_dec.grad is None:
            return
        norm_sq = self.W_dec.pow(2).sum(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps ** 2)
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True) / norm_sq
        self.W_dec.grad.addcmul_(parallel, self.W_dec, value=-1.0)

    def save(self, path: str | os.PathLike, extra_config: dict | None = None) -> None:
        """Write ``sae.safetensors`` and ``config.json`` into directory ``path``, atomically.

        ``config.json`` holds every `SAEConfig` field (``variant`` among them), ``format_version``,
        ``input_scale`` and, under their own keys, the entries of ``extra_config`` (training
        settings, provenance). Buffers (``input_scale``, BatchTopK's ``threshold``) travel in the
        safetensors file with the parameters.
        """
        path = Path(path)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
        config = {
            "format_version": FORMAT_VERSION,
            **asdict(self.cfg),
            "input_scale": float(self.input_scale),
            **self._extra_config(),
            **(extra_config or {}),
        }
        write_json(path / CONFIG_FILE, config)

    def _extra_config(self) -> dict:
        return {}

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "TopKSAE":
        """Read an SAE written by `save` (any variant: the class follows the config's ``variant``)."""
        path = Path(path)
        config = json.loads((path / CONFIG_FILE).read_text())
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: SAE format version {version}, this code reads {FORMAT_VERSION}")
        cfg = SAEConfig(**{f.name: config[f.name] for f in fields(SAEConfig) if f.name in config})
        sae = sae_class(cfg.variant)(cfg, device=device)
        sae.load_state_dict(load_file(str(path / WEIGHTS_FILE), device=str(device)))
        return sae


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE (Bussmann et al. 2024): adds the buffers ``threshold`` (scalar, in model
    space) and ``threshold_updates`` (int64) to `TopKSAE`.

    Training keeps the ``batch * k`` largest ReLU'd pre-activations of the batch, found exactly
    without sorting the whole batch: each token's top ``2k`` are candidates; the ``batch * k``-th
    largest candidate bounds the batch's threshold from below, so only tokens whose every
    candidate reaches it can hold more, and their rows are scanned in full; the top ``batch *
    k`` of the union are kept.
    """

    def __init__(self, cfg: SAEConfig, device: torch.device | str = "cpu"):
        super().__init__(cfg, device)
        self.register_buffer("threshold", torch.zeros((), device=device))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64, device=device))

    def _select_training(self, pre_acts: torch.Tensor, extras: dict) -> torch.Tensor:
        if not self.cfg.batch_selection:
            return super()._select_training(pre_acts, extras)
        batch, n_latents = pre_acts.shape
        n_keep = batch * self.cfg.k
        n_candidates = min(n_latents, 2 * self.cfg.k)
        cand_vals, cand_idx = pre_acts.topk(n_candidates, dim=-1, sorted=False)
        candidates = self._per_token_flat(pre_acts, cand_idx)
        lower_bound = cand_vals.reshape(-1).topk(n_keep, sorted=False).values.min()
        saturated = cand_vals.min(-1).values >= lower_bound
        if n_candidates < n_latents and bool(saturated.any()):
            rows = saturated.nonzero().squeeze(1)
            above = (pre_acts[rows] >= lower_bound).nonzero()
            candidates = torch.cat([candidates[~saturated].reshape(-1), rows[above[:, 0]] * n_latents + above[:, 1]])
        else:
            candidates = candidates.reshape(-1)
        top = pre_acts.view(-1)[candidates].topk(n_keep, sorted=False)
        positive = top.values > 0
        kept_values = top.values[positive]
        extras["min_kept"] = kept_values.min().float() if len(kept_values) else None
        return candidates[top.indices[positive]].sort().values

    @torch.no_grad()
    def _update_threshold(self, extras: dict) -> None:
        """Bias-corrected exponential running mean of the smallest kept activation per batch."""
        min_kept = extras.get("min_kept")
        if min_kept is None:
            return
        decay = self.cfg.threshold_decay
        n = int(self.threshold_updates)
        raw = self.threshold * (1 - decay**n) if n else torch.zeros_like(self.threshold)
        raw = decay * raw + (1 - decay) * min_kept.to(raw)
        self.threshold_updates += 1
        self.threshold.copy_(raw / (1 - decay ** (n + 1)))

    def _threshold_inference(self, vals: torch.Tensor) -> torch.Tensor:
        if not self.cfg.batch_selection:
            return vals
        return vals * (vals >= self.threshold)

    def _extra_config(self) -> dict:
        return {"threshold": float(self.threshold)} if self.cfg.batch_selection else {}


class MatryoshkaSAE(BatchTopKSAE):
    """Matryoshka SAE: TopK or BatchTopK selection (``matryoshka_selection``); the loss is the
    mean FVU of the reconstructions from the nested prefixes ``prefix_sizes`` of the dictionary.

    The prefix reconstructions come from one gather: the kept latents are grouped by (token,
    prefix group), ``embedding_bag`` sums each group, and a cumulative sum over the groups gives
    every prefix's reconstruction.
    """

    def _reconstruction_loss(self, x, codes, mean, std):
        sizes = torch.tensor(self.cfg.prefix_sizes, device=codes.latents.device)
        n_tokens, n_groups = len(codes.offsets), len(sizes)
        counts = torch.diff(codes.offsets, append=codes.offsets.new_tensor([len(codes.latents)]))
        tokens = torch.repeat_interleave(torch.arange(n_tokens, device=counts.device), counts)
        bags = tokens * n_groups + torch.bucketize(codes.latents, sizes, right=True)
        order = bags.argsort(stable=True)
        segments = F.embedding_bag(
            codes.latents[order], self.W_dec, group_offsets(bags, n_tokens * n_groups),
            per_sample_weights=codes.values[order].to(self.W_dec.dtype), mode="sum",
        ).view(n_tokens, n_groups, -1)
        prefixes = segments.cumsum(1) + self.b_pre
        prefix_out = self._to_input_space(prefixes, *(None if s is None else s[:, None] for s in (mean, std)))
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        prefix_fvu = (x[:, None] - prefix_out).pow(2).sum((0, 2)) / total_variance
        return prefix_out[:, -1], prefix_fvu.mean()


class ReLUSAE(TopKSAE):
    """ReLU SAE with the decoder-norm-weighted L1 penalty (``relu_l1``); dense encoder and
    decoder. `encode` keeps each token's ``k`` largest latents; `forward` uses them all."""

    unit_norm_decoder = False
    encode_truncates = True

    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> ForwardOutput:
        """Encode and decode ``x`` ``(batch, d_model)`` with every active latent. ``dead_mask``
        is accepted for a uniform interface and ignored (no AuxK)."""
        x = x.to(self.W_dec.dtype)
        model_space, mean, std = self._to_model_space(x)
        z = F.linear(model_space - self.b_pre, self.W_enc, self.b_enc).relu()
        sae_out = self._to_input_space(F.linear(z, self.W_dec.t()).float() + self.b_pre, mean, std)
        fvu = batch_fvu(x, sae_out)
        mse = (x - sae_out).pow(2).sum(-1).mean()
        # The L1 norm as Anthropic's loss sees it after scaling x to E||x - mean||^2 = d_model,
        # relative to the squared error of that scale: l1 * sqrt(d_model / V) / d_model.
        variance = (model_space - model_space.mean(0)).pow(2).sum(-1).mean()
        l1 = (z.float() @ self.W_dec.norm(dim=1)).mean()
        penalty = l1 / (variance * self.cfg.d_model).sqrt().clamp_min(torch.finfo(x.dtype).tiny)
        loss = fvu + self.cfg.l1_coef * penalty
        active = z > 0
        top_vals, top_idx = z.detach().topk(self.k_store, dim=-1, sorted=False)
        return ForwardOutput(
            sae_out, top_vals.float(), top_idx, fvu, mse, sae_out.new_zeros(()), loss,
            active.sum(-1).float().mean(), active.any(0),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top_vals, top_idx = self.pre_acts(x.to(self.W_dec.dtype)).topk(self.k_store, dim=-1, sorted=False)
        return top_vals.relu(), top_idx


def sae_class(variant: str) -> type[TopKSAE]:
    """The class that implements ``variant``."""
    classes = {"topk": TopKSAE, "batchtopk": BatchTopKSAE, "matryoshka": MatryoshkaSAE, "relu_l1": ReLUSAE}
    if variant not in classes:
        raise ValueError(f"SAE variant {variant!r} is not one of {VARIANTS}")
    return classes[variant]


def make_sae(cfg: SAEConfig, device: torch.device | str = "cpu") -> TopKSAE:
    """A freshly initialised SAE of ``cfg.variant``."""
    return sae_class(cfg.variant)(cfg, device=device)

