"""The TopK SAE trainers a user would otherwise pick, driven step by step on the same activation
batches as protsae's (for benchmarks/sae_train.py; install them with ``pip install -e ".[bench]"``).

Each trainer is the library's own, with its own defaults for what a user does not set
(optimiser, learning rate and its schedule, decoder initialisation and normalisation); what the
comparison fixes is the same for all: d_model, width, k, batch size, the batches themselves and so
the token budget. AuxK is off in all three (no latent can die within a benchmark's budget).

* EleutherAI's sparsify (PyPI ``eai-sparsify``): `sparsify.SparseCoder` trained as
  ``sparsify.Trainer`` does for the ``fvu`` loss: decoder bias set to the first batch's mean,
  decoder rows kept at unit norm with the parallel gradient removed, and its default optimiser,
  schedule-free SignSGD at ``5e-3 / sqrt(width / 2**14)``. Its Trainer itself hooks a Hugging Face
  model, so the loop is written out here line for line from it.
* SAELens (PyPI ``sae-lens``): `sae_lens.SAETrainer` with a `TopKTrainingSAE`, fed by a data
  provider; its default Adam at 3e-4, constant.
"""

from __future__ import annotations

import contextlib
import io

import torch

PEERS = {"sparsify": "sparsify", "saelens": "sae_lens"}
"""Each peer's name in the benchmark's tables -> its module."""


def available() -> dict[str, str | None]:
    """Each peer's version, or None where it is not installed."""
    versions = {}
    for name, module in PEERS.items():
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                imported = __import__(module)
            versions[name] = getattr(imported, "__version__", "installed")
        except ImportError:
            versions[name] = None
    if versions["sparsify"] == "installed":
        from importlib.metadata import version

        versions["sparsify"] = version("eai-sparsify")
    return versions


class SparsifyRun:
    """One `sparsify.SparseCoder` trained as `sparsify.Trainer` trains it (loss ``fvu``)."""

    def __init__(self, d_model: int, width: int, k: int, first_batch: torch.Tensor, seed: int = 0):
        from schedulefree import ScheduleFreeWrapper
        from sparsify import SparseCoder, SparseCoderConfig
        from sparsify.sign_sgd import SignSGD

        torch.manual_seed(seed)
        self.lr = 5e-3 / (width / 2**14) ** 0.5  # Trainer's default for its signum optimiser
        self.sae = SparseCoder(d_model, SparseCoderConfig(num_latents=width, k=k), device="cpu", dtype=torch.float32)
        # Trainer.fit, first step: centre the pre-activations by the batch mean; unit-norm decoder.
        self.sae.b_dec.data = first_batch.mean(0).to(self.sae.dtype)
        self.sae.set_decoder_norm_to_unit_norm()
        self.optimizer = ScheduleFreeWrapper(
            SignSGD([{"params": self.sae.parameters(), "lr": self.lr}]), momentum=0.95
        )
        self.optimizer.train()

    def step(self, x: torch.Tensor) -> None:
        self.sae.set_decoder_norm_to_unit_norm()
        out = self.sae(x, dead_mask=None)
        out.fvu.backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.optimizer.step()
        self.optimizer.zero_grad()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        # Schedule-free weights are the averaged ones in eval mode (as sparsify saves them).
        self.optimizer.eval()
        try:
            return self.sae(x).sae_out
        finally:
            self.optimizer.train()


class SAELensRun:
    """One `sae_lens.TopKTrainingSAE` trained by `sae_lens.SAETrainer`, one ``step`` per batch."""

    def __init__(self, d_model: int, width: int, k: int, batch_size: int, n_steps: int, seed: int = 0):
        from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.config import LoggingConfig, SAETrainerConfig

        torch.manual_seed(seed)
        self.sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_model, d_sae=width, k=k, aux_loss_coefficient=0.0,
                                                         device="cpu", dtype="float32"))
        # lr_end as SAELens's runner config fills it in (lr / 10; used by its cosine schedule only).
        lr = SAETrainerConfig.lr
        cfg = SAETrainerConfig(total_training_samples=batch_size * n_steps, train_batch_size_samples=batch_size,
                               lr=lr, lr_end=lr / 10, device="cpu", logger=LoggingConfig(log_to_wandb=False))
        self.trainer = SAETrainer(cfg, self.sae, data_provider=iter(()))

    def step(self, x: torch.Tensor) -> None:
        # SAETrainer.fit's loop body, without its logging and checkpoints.
        self.trainer.maybe_reset_sparsity()
        self.trainer.step(x)
        self.trainer.n_training_steps += 1

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae(x)

