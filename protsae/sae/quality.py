"""SAEBench's core metrics of an SAE (Karvonen et al. 2025, ``sae_bench/evals/core/main.py``),
as pure functions on tensors and two entry points that take any SAE.

Reconstruction, on tokens ``x`` ``(n, d_model)`` with reconstruction ``x_hat = decode(encode(x))``
(what downstream stages and the splice evaluation see), each a mean over tokens like SAEBench's:

    explained_variance        = 1 - sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean(x)||^2  (1 - FVU)
    explained_variance_legacy = mean_t [1 - ||x_t - x_hat_t||^2 / ||x_t - mean(x)||^2]
    cosine             = mean_t cos(x_t, x_hat_t)
    l2_ratio           = mean_t ||x_hat_t|| / ||x_t||
    relative_reconstruction_bias = E_t ||x_hat_t||^2 / E_t <x_t, x_hat_t>

SAELens and SAEBench report both explained variances under these names: the pooled one, which
is 1 - FVU, and the per-token "legacy" one, which tokens near the mean can drag far below it;
``mean(x)`` is the mean of all tokens evaluated, where they take each batch's mean (the same up to
sampling noise for batches of thousands). The relative
reconstruction bias (Rajamanoharan et al. 2024, eq. 10) is the gamma minimising
``E ||x_hat / gamma - x||^2``: 1 for an unbiased SAE, below 1 for one that shrinks its output
(``x_hat = 0.5 x`` gives 0.5), over 1 for one that inflates it; it pools all tokens, where
SAEBench averages per-batch ratios.

Behaviour (`token_kl_divergence`, `kl_recovered`): the LM's output distribution with the SAE
spliced in against the clean one, ``KL(p_clean || p_sae)``, and the same for zero-ablation;
``kl_recovered = 1 - KL_sae / KL_zero`` (SAEBench's ``kl_div_score``), next to CE's loss
recovered (`protsae.sae.splice`).

Latent density: each latent's firing frequency over the tokens, its histogram in log10
(`DENSITY_LOG10_EDGES`, latents that never fire counted apart), the share of latents alive
(firing at least once) and the shares firing on more than 1% and 10% of tokens (dense latents).

Dictionary (`dictionary_metrics`): each latent's largest decoder cosine to any other latent
(near 1 for duplicated latents; SAEBench's ``max_decoder_cosine_sim``) and the cosine of its
encoder row to its decoder row (SAEBench's ``encoder_decoder_cosine_sim``; 1 for a tied SAE).

An SAE here is anything with ``encode(x) -> (values, indices)`` (``(n, slots)``, values >= 0),
``decode(values, indices)`` (with ``x=x`` when ``sae.cfg.standardize_tokens``), ``cfg.n_latents``
and weights ``W_enc``, ``W_dec`` ``(n_latents, d_model)``: every variant of
`protsae.sae.variants` and the published SAEs loaded into them.
"""

from __future__ import annotations

import numpy as np
import torch

DENSITY_LOG10_EDGES = tuple(float(edge) for edge in np.linspace(-8.0, 0.0, 33))
"""Bin edges of the latent density histogram, log10 of the share of tokens a latent fires on
(steps of 0.25); fixed, so that histograms of different SAEs line up. Frequencies below 1e-8
(only with more than 10^8 tokens) fall in the first bin."""

DENSE_FREQUENCIES = {"1pct": 0.01, "10pct": 0.1}
"""Firing frequencies above which a latent counts as dense, by the suffix of its metric."""

DUPLICATE_COSINE = 0.9
"""Decoder cosine to another latent above which a latent counts as a duplicate."""

RECONSTRUCTION_METRICS = (
    "explained_variance", "explained_variance_legacy", "cosine", "l2_ratio", "relative_reconstruction_bias", "alive_share",
    *(f"firing_above_{name}_share" for name in DENSE_FREQUENCIES), "density_histogram",
)
"""The keys of `reconstruction_metrics` beyond FVU, L0 and the token count (which the trainer's
`protsae.sae.train.evaluate` reports already): what it adds to them."""

_NORM_FLOOR = 1e-4
"""SAEBench's guard of the L2 ratio: inputs of smaller norm divide by 1 instead."""


# Per-token reconstruction quantities, float64, shape (n,).

def token_explained_variance(x: torch.Tensor, x_hat: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``1 - ||x_t - x_hat_t||^2 / ||x_t - mean||^2`` per token; ``x``, ``x_hat`` ``(n, d_model)``,
    ``mean`` ``(d_model,)``, the mean of all tokens evaluated."""
    x, x_hat, mean = x.double(), x_hat.double(), mean.double()
    residual = (x - x_hat).pow(2).sum(-1)
    total = (x - mean).pow(2).sum(-1)
    return 1.0 - residual / total


def token_cosine(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Cosine of ``x_hat_t`` to ``x_t`` per token (0 where either is the zero vector)."""
    return torch.nn.functional.cosine_similarity(x.double(), x_hat.double(), dim=-1, eps=1e-12)


def token_l2_ratio(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """``||x_hat_t|| / ||x_t||`` per token; inputs of norm below 1e-4 divide by 1 (SAEBench)."""
    norm_in = x.double().norm(dim=-1)
    norm_in = torch.where(norm_in.abs() < _NORM_FLOOR, torch.ones_like(norm_in), norm_in)
    return x_hat.double().norm(dim=-1) / norm_in


def relative_reconstruction_bias(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``sum_t ||x_hat_t||^2 / sum_t <x_t, x_hat_t>``: the gamma minimising
    ``sum_t ||x_hat_t / gamma - x_t||^2`` (1 unbiased, < 1 shrunk)."""
    x, x_hat = x.double(), x_hat.double()
    return float(x_hat.pow(2).sum() / (x * x_hat).sum())


# Behaviour of the LM with the SAE spliced in.

def token_kl_divergence(clean_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(clean_logits) || softmax(logits))`` per position, in nats, float64;
    both ``(..., vocab)``. Computed from log-softmax; entries of clean probability 0 (logit
    -inf) contribute 0, not NaN."""
    clean = clean_logits.double().log_softmax(-1)
    other = logits.double().log_softmax(-1)
    probability = clean.exp()
    terms = torch.where(probability > 0, probability * (clean - other), 0.0)
    return terms.sum(-1)


def kl_recovered(kl_sae: float, kl_zero: float) -> float:
    """``1 - KL_sae / KL_zero`` (SAEBench's ``kl_div_score``): 1 when the spliced model's output
    is the clean one, 0 when it is as far off as zero-ablation's; NaN when ablation changes nothing."""
    return 1.0 - kl_sae / kl_zero if kl_zero != 0 else float("nan")


# Latent density.

def density_metrics(fire_counts: torch.Tensor, n_tokens: int) -> dict:
    """Density of latents that fired ``fire_counts`` ``(n_latents,)`` times on ``n_tokens`` tokens.

    Returns ``alive_share`` (fired at least once), ``firing_above_1pct_share`` and
    ``firing_above_10pct_share`` (frequency strictly above 1% and 10%), and
    ``density_histogram``: ``log10_edges`` (`DENSITY_LOG10_EDGES`), ``counts`` (latents per bin
    of log10 frequency, alive latents only; the last bin includes frequency 1) and
    ``never_fired`` (latents outside the histogram).
    """
    if n_tokens <= 0:
        raise ValueError("latent density needs at least one token")
    frequency = fire_counts.double().cpu() / n_tokens
    alive = frequency > 0
    log_frequency = frequency[alive].log10().clamp_min(DENSITY_LOG10_EDGES[0]).numpy()
    counts, _ = np.histogram(log_frequency, bins=np.asarray(DENSITY_LOG10_EDGES))
    return {
        "alive_share": float(alive.double().mean()),
        **{f"firing_above_{name}_share": float((frequency > threshold).double().mean())
           for name, threshold in DENSE_FREQUENCIES.items()},
        "density_histogram": {
            "log10_edges": list(DENSITY_LOG10_EDGES),
            "counts": [int(c) for c in counts],
            "never_fired": int((~alive).sum()),
        },
    }


class ReconstructionSums:
    """Running sums over batches of tokens for `reconstruction_metrics` (float64).

    ``mean`` ``(d_model,)`` is the mean of all the tokens that will be added (the explained
    variance's reference), known before the first batch.
    """

    def __init__(self, n_latents: int, mean: torch.Tensor):
        self.mean = mean.double()
        self.n_tokens = 0
        self.explained_variance = 0.0
        self.cosine = 0.0
        self.l2_ratio = 0.0
        self.output_norm_sq = 0.0
        self.input_output_dot = 0.0
        self.residual_sq = 0.0
        self.total_sq = 0.0
        self.n_active = 0
        self.fire_counts = torch.zeros(n_latents, dtype=torch.int64)

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> None:
        """One batch: tokens ``x`` and reconstructions ``x_hat`` ``(batch, d_model)``, and the
        kept latents, ``values`` and ``indices`` ``(batch, slots)`` (a latent counts as firing
        where its value is > 0)."""
        x, x_hat = x.double(), x_hat.double()
        mean = self.mean.to(x.device)
        self.n_tokens += len(x)
        self.explained_variance += float(token_explained_variance(x, x_hat, mean).sum())
        self.cosine += float(token_cosine(x, x_hat).sum())
        self.l2_ratio += float(token_l2_ratio(x, x_hat).sum())
        self.output_norm_sq += float(x_hat.pow(2).sum())
        self.input_output_dot += float((x * x_hat).sum())
        self.residual_sq += float((x - x_hat).pow(2).sum())
        self.total_sq += float((x - mean).pow(2).sum())
        active = values > 0
        self.n_active += int(active.sum())
        # Counted where the latents are (no transfer per batch); read once, by `result`.
        self.fire_counts = self.fire_counts.to(indices.device)
        self.fire_counts += torch.bincount(indices[active].reshape(-1).long(), minlength=len(self.fire_counts))

    def result(self) -> dict:
        """The metrics of `reconstruction_metrics` over every token added."""
        n = self.n_tokens
        if n == 0:
            raise ValueError("no tokens were added")
        return {
            "explained_variance": 1 - self.residual_sq / self.total_sq,
            "explained_variance_legacy": self.explained_variance / n,
            "cosine": self.cosine / n,
            "l2_ratio": self.l2_ratio / n,
            "relative_reconstruction_bias": self.output_norm_sq / self.input_output_dot,
            **density_metrics(self.fire_counts, n),
            "fvu": self.residual_sq / self.total_sq,
            "l0": self.n_active / n,
            "n_tokens": n,
        }


def _placement(sae) -> tuple[torch.device | None, torch.dtype]:
    """Device and dtype of an SAE's weights; (None, float32) for a stand-in without parameters
    (as `protsae.codes.encode.sae_placement`, which this module does not import: it stays free
    of the language-model code)."""
    parameter = next(sae.parameters(), None) if isinstance(sae, torch.nn.Module) else None
    return (None, torch.float32) if parameter is None else (parameter.device, parameter.dtype)


def reconstruct(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``decode(encode(x))`` of ``x`` ``(n, d_model)`` on the SAE's device and dtype: the
    reconstruction ``(n, d_model)`` float32 and the kept latents' values and indices."""
    device, dtype = _placement(sae)
    x = x.to(device=device or x.device, dtype=dtype)
    values, indices = sae.encode(x)
    # InterProt's SAEs standardise each token, so their decode needs the input too.
    if getattr(getattr(sae, "cfg", None), "standardize_tokens", False):
        x_hat = sae.decode(values, indices, x=x)
    else:
        x_hat = sae.decode(values, indices)
    return x_hat.float(), values, indices


@torch.no_grad()
def reconstruction_metrics(sae, activations: torch.Tensor, batch_size: int = 4096) -> dict:
    """SAEBench's reconstruction and density metrics of ``sae`` on ``activations`` ``(n,
    d_model)`` (any float dtype; widened to float32 batch by batch), ``x_hat = decode(encode(x))``.

    Returns explained_variance, cosine, l2_ratio, relative_reconstruction_bias (see the module
    docstring), the density metrics of `density_metrics` (alive_share,
    firing_above_1pct_share, firing_above_10pct_share, density_histogram), and fvu, l0 and
    n_tokens of the same reconstruction. An `torch.nn.Module` SAE runs in eval mode (its mode
    is restored after).
    """
    if len(activations) == 0:
        raise ValueError("reconstruction metrics need at least one token")
    module = sae if isinstance(sae, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    mean = activations.mean(0, dtype=torch.float64)
    sums = ReconstructionSums(sae.cfg.n_latents, mean)
    for start in range(0, len(activations), batch_size):
        x = activations[start : start + batch_size].float()
        x_hat, values, indices = reconstruct(sae, x)
        sums.add(x.to(x_hat.device), x_hat, values, indices)
    if module is not None:
        module.train(was_training)
    return sums.result()


# Dictionary geometry.

def max_cosine_to_others(rows: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each row of ``rows`` ``(n, d)``, its largest cosine to any other row, ``(n,)`` float32
    (NaN for a single row). Row blocks of ``chunk`` against all rows: memory ``chunk * n``."""
    n = len(rows)
    if n < 2:
        return torch.full((n,), float("nan"))
    unit = torch.nn.functional.normalize(rows.detach().float(), dim=1)
    result = torch.empty(n, dtype=torch.float32, device=unit.device)
    for start in range(0, n, chunk):
        block = unit[start : start + chunk] @ unit.T
        own = torch.arange(len(block), device=unit.device)
        block[own, start + own] = float("-inf")
        result[start : start + chunk] = block.max(dim=1).values
    return result.cpu()


def encoder_decoder_cosine(encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """Cosine of each latent's encoder row to its decoder row; both ``(n_latents, d_model)``,
    result ``(n_latents,)`` float32."""
    if encoder.shape != decoder.shape:
        raise ValueError(f"encoder {tuple(encoder.shape)} and decoder {tuple(decoder.shape)} differ in shape")
    return torch.nn.functional.cosine_similarity(encoder.detach().float(), decoder.detach().float(), dim=1).cpu()


@torch.no_grad()
def dictionary_metrics(sae) -> dict:
    """SAEBench's weight-based metrics of ``sae`` (``W_enc``, ``W_dec`` ``(n_latents, d_model)``):
    decoder_max_cosine_mean and _median (each latent's largest decoder cosine to another latent),
    decoder_duplicate_share (latents whose largest exceeds `DUPLICATE_COSINE`),
    encoder_decoder_cosine_mean and _median."""
    max_cosine = max_cosine_to_others(sae.W_dec)
    enc_dec = encoder_decoder_cosine(sae.W_enc, sae.W_dec)
    return {
        "decoder_max_cosine_mean": float(max_cosine.mean()),
        "decoder_max_cosine_median": float(np.median(max_cosine.numpy())),
        "decoder_duplicate_share": float((max_cosine > DUPLICATE_COSINE).float().mean()),
        "encoder_decoder_cosine_mean": float(enc_dec.mean()),
        "encoder_decoder_cosine_median": float(np.median(enc_dec.numpy())),
    }
