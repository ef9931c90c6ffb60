"""The settings of one SAE run: its architecture and sparsity (`SAEConfig`), how it is trained
(`TrainConfig`), and both built from the pipeline config (`run_configs`).

The keys of the config schema's ``sae.training`` and ``sae.variants.<variant>`` sections are the
fields of these dataclasses, under the same names and with the same defaults (a test keeps them
in step), so a setting reaches the code without a table of names in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

FORMAT_VERSION = 1


WEIGHTS_FILE = "sae.safetensors"


CONFIG_FILE = "config.json"


VARIANTS = ("topk", "batchtopk", "matryoshka", "relu_l1")


TOKEN_STD_EPS = 1e-5
"""Added to each token's standard deviation by ``standardize_tokens`` (InterProt's value)."""


@dataclass
class SAEConfig:
    """Architecture and sparsity of one SAE."""

    d_model: int
    """Width of the residual stream it reads."""

    n_latents: int = 4096
    """Dictionary size (the paper's "width")."""

    k: int = 64
    """Latents kept per token (mean per token for ``batchtopk``; for ``relu_l1``, the number of
    latent slots `encode` keeps)."""

    variant: Literal["topk", "batchtopk", "matryoshka", "relu_l1"] = "topk"
    """Sparsity mechanism, see the module docstring."""

    k_aux: int | None = None
    """Dead latents used by the AuxK loss; default ``d_model // 2`` (Gao et al.)."""

    dead_tokens_threshold: int = 1_000_000
    """A latent is dead once it has not fired for this many training tokens."""

    auxk_coef: float = 1 / 32
    """Weight of the AuxK loss (TopK-type variants)."""

    normalize_input: bool = True
    """Scale inputs to unit mean squared norm with a scalar estimated at initialisation."""

    seed: int = 0
    """Seed of the weight initialisation."""

    k_store: int | None = None
    """Latent slots per token that `encode` returns (padding slots hold 0); default ``k``. Only
    batch-level selection (``batchtopk``, ``matryoshka`` with BatchTopK) can use more than k
    latents on a token, so only there may it exceed ``k``."""

    matryoshka_prefixes: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    """Nested dictionary prefixes of ``matryoshka``, as increasing fractions of ``n_latents``
    ending at 1; each prefix's reconstruction adds an FVU term to the loss."""

    matryoshka_selection: Literal["topk", "batchtopk"] = "batchtopk"
    """Latent selection of ``matryoshka`` (Bussmann et al. 2025 use BatchTopK)."""

    threshold_decay: float = 0.99
    """Per-step decay of the running mean behind the BatchTopK inference threshold."""

    l1_coef: float = 5.0
    """Weight of ``relu_l1``'s sparsity penalty: the mean over tokens of sum_j z_j ||W_dec_j||,
    divided by sqrt(V * d_model) with V the batch's mean squared distance to its mean. Added to
    the FVU this is scale-free, and equals Anthropic's loss (April 2024 update, lambda ~ 5)
    divided by d_model when inputs are scaled to E||x - mean||^2 = d_model; tune it per layer
    for the wanted L0."""

    standardize_tokens: bool = False
    """Standardise each token over d_model before encoding (InterProt's SAEs), see the module
    docstring of `protsae.sae.variants`; excludes ``normalize_input`` (so needs it False)."""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"SAE variant {self.variant!r} is not one of {VARIANTS}")
        if self.k_aux is None:
            self.k_aux = self.d_model // 2
        if not 0 < self.k <= self.n_latents:
            raise ValueError(f"k={self.k} must be in [1, n_latents={self.n_latents}]")
        self.matryoshka_prefixes = tuple(float(f) for f in self.matryoshka_prefixes)
        if self.variant == "matryoshka":
            sizes = self.prefix_sizes
            if sizes[-1] != self.n_latents or any(a >= b for a, b in itertools.pairwise(sizes)) or sizes[0] < 1:
                raise ValueError(
                    f"matryoshka_prefixes {self.matryoshka_prefixes} must increase to 1 and give "
                    f"distinct non-empty prefixes of {self.n_latents} latents (sizes {sizes})"
                )
        if self.matryoshka_selection not in ("topk", "batchtopk"):
            raise ValueError(f"matryoshka_selection must be 'topk' or 'batchtopk', not {self.matryoshka_selection!r}")
        if self.k_store is None:
            self.k_store = self.k
        if self.k_store != self.k and not (self.batch_selection and self.k <= self.k_store <= self.n_latents):
            raise ValueError(
                f"k_store={self.k_store}: only batch-level selection may store more than k={self.k} "
                f"latents per token (and at most n_latents)"
            )
        if not 0.0 <= self.threshold_decay < 1.0:
            raise ValueError(f"threshold_decay={self.threshold_decay} must be in [0, 1)")
        if self.standardize_tokens and self.normalize_input:
            raise ValueError("standardize_tokens and normalize_input exclude each other")

    @property
    def batch_selection(self) -> bool:
        """Whether training keeps the top ``batch * k`` activations of the batch (BatchTopK)."""
        matryoshka_batch = self.variant == "matryoshka" and self.matryoshka_selection == "batchtopk"
        return self.variant == "batchtopk" or matryoshka_batch

    @property
    def prefix_sizes(self) -> list[int]:
        """Latents in each Matryoshka prefix."""
        return [round(f * self.n_latents) for f in self.matryoshka_prefixes]



@dataclass
class TrainConfig:
    """How one SAE is trained and evaluated."""

    n_tokens: int = 2_000_000
    """Training tokens in all; the run takes ``n_tokens // batch_size`` steps."""

    batch_size: int = 4096
    """Tokens per step."""

    lr: float | None = None
    """Peak learning rate; default `protsae.sae.train.default_lr` of the dictionary size."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's decay rates of the gradient's first and second moments (Gao et al.)."""

    eps: float = 6.25e-10
    """Adam's epsilon (Gao et al.)."""

    warmup_fraction: float = 0.05
    """Share of the steps over which the learning rate rises linearly from 0."""

    decay_fraction: float = 0.2
    """Share of the steps, at the end, over which it falls linearly to 0."""

    grad_clip_norm: float = 1.0
    """Gradient norm clipping; 0 disables it."""

    log_every: int = 100
    """Steps between log lines; the history gets a row at least as often."""

    init_tokens: int = 4096
    """Training tokens used to estimate ``b_pre`` (geometric median) and the input scale."""

    holdout_fraction: float = 0.05
    """Share of sequences held out for evaluation (chosen by hashing ``seq_id``)."""

    holdout_seed: int = 0
    """Seed of the held-out split; independent of ``seed`` so a seed sweep keeps the split."""

    eval_tokens: int = 100_000
    """Most held-out tokens evaluated."""

    shuffle_buffer: int = 2**18
    """Tokens in the shuffle buffer (memory: shuffle_buffer * d_model * 2 bytes for float16)."""

    seed: int = 0
    """Seed of the data order and of torch."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; "auto" takes CUDA when available."""

    autocast: Literal["none", "bf16"] = "bf16"
    """bf16 autocast of the forward pass: the encoder matmul runs in bfloat16 (training 1.7-2.0x
    the float32 tokens/s on CPU in benchmarks/sae_train.py); decoding, losses and the optimiser
    stay float32."""

    checkpoint_every: int | None = None
    """Steps between checkpoints; None: every 5% of the run; 0: only on time (below)."""

    checkpoint_minutes: float | None = 30.0
    """Also checkpoint when this many minutes have passed since the last one; None: never."""

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.n_tokens < self.batch_size:
            raise ValueError(f"n_tokens={self.n_tokens} is less than one batch ({self.batch_size})")


RESOURCE_KEYS = frozenset({"threads", "gpus", "mem_mb", "runtime"})
"""Keys of ``sae.training`` that say what a job needs from the scheduler, not how it trains."""


def run_configs(
    training: Mapping[str, Any], variant_options: Mapping[str, Any], **sweep: Any
) -> tuple[SAEConfig, TrainConfig]:
    """`SAEConfig` and `TrainConfig` of one SAE from the config's ``sae.training`` section,
    its ``sae.variants.<variant>`` section and the fields its sweep entry fixes (``d_model``,
    ``n_latents``, ``k``, ``variant``).

    Each key goes to the dataclass that has a field of its name, to both if both have one
    (``seed``); resource keys are skipped. A key that is a field of neither raises, naming it.
    """
    sae_names = {f.name for f in fields(SAEConfig)}
    train_names = {f.name for f in fields(TrainConfig)}
    sae_kwargs, train_kwargs = dict(sweep), {}
    seen = set(sweep)
    for section, settings in (("sae.training", training), ("sae.variants", variant_options)):
        for key, value in settings.items():
            if section == "sae.training" and key in RESOURCE_KEYS:
                continue
            if key in seen:
                raise ValueError(f"{section} key {key!r} is set twice (by the sweep or by sae.training too)")
            if key not in sae_names and key not in train_names:
                raise ValueError(f"{section} key {key!r} is neither an SAEConfig nor a TrainConfig field")
            seen.add(key)
            if key in sae_names:
                sae_kwargs[key] = value
            if key in train_names:
                train_kwargs[key] = value
    return SAEConfig(**sae_kwargs), TrainConfig(**train_kwargs)
