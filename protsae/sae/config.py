"""An SAE's architecture and sparsity (`SAEConfig`); the names and defaults the config schema
repeats (a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

    dead_tokens_threshold: int = 10_000_000
    """A latent is dead once it has not fired for this many training tokens."""

    auxk_coef: float = 1 / 32
    """Weight of the AuxK loss (TopK-type variants)."""

    normalize_input: bool = False
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
    docstring; excludes ``normalize_input``."""

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
            if sizes[-1] != self.n_latents or any(a >= b for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
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

