"""Train one SAE on cached activations and evaluate it on held-out sequences.

The loss is the variant's objective (for TopK and BatchTopK the batch FVU: squared error
normalised by the batch's total variance, Gao et al.'s "normalised MSE"; see `ForwardOutput.loss`)
plus ``auxk_coef`` times the AuxK loss. Being scale-free, it trains with the same learning rate
whatever the activation norm of the layer; the plain MSE is logged beside it. Each step
(`training_step`): forward, backward, remove the decoder gradients parallel to the decoder rows,
clip the gradient norm, Adam step, renormalise the decoder rows (the last two steps only where
the variant keeps unit-norm decoder rows).

`train_sae` runs in four parts: `_start` resumes the run from its checkpoint or initialises it,
`_train_steps` is the step loop, `_save_checkpoint` and `_load_checkpoint` write and check the
checkpoint, and `_finish` evaluates the SAE and writes the outputs. A run checkpoints itself
(``checkpoint.pt`` in the output directory, written atomically) and resumes from it when started
again; the data stream is deterministic for a seed and resumes by fast-forwarding
(`ActivationStream.batches`), so an interrupted and resumed run ends with the same weights as an
uninterrupted one on CPU.

Of the loop's own work, only the rows of the history wait on the device, and, rarely, the
question whether any latent is dead (`DeadLatents`); the dead-latent counters stay on the device.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from protsae.activations.manifest import file_sha256
from protsae.activations.stream import ActivationStream, read_heldout
from protsae.device import resolve_device
from protsae.files import atomic_path, remove_stale_temporaries, write_json
from protsae.sae.config import SAEConfig, TrainConfig
from protsae.sae.quality import (
    RECONSTRUCTION_METRICS,
    ReconstructionSums,
    dictionary_metrics,
)
from protsae.sae.variants import ForwardOutput, TopKSAE, make_sae

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
STALE_CHECKPOINT_FILE = "checkpoint.stale.pt"
TIMING_METRICS = ("train_seconds", "tokens_per_s")
"""Metrics that measure the machine, not the SAE: in metrics.json, never in the result tables."""
CHECKPOINT_VERSION = 1
# Settings that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"device", "log_every", "checkpoint_every", "checkpoint_minutes"}


def default_lr(n_latents: int) -> float:
    """Gao et al.'s learning-rate scaling with dictionary size: 2e-4 / sqrt(n_latents / 16384)."""
    return 2e-4 / math.sqrt(n_latents / 2**14)


def _lr_factor(step: int, n_steps: int, warmup_fraction: float, decay_fraction: float) -> float:
    """Linear warm-up over the first steps, constant, linear decay to 0 over the last steps."""
    warmup_steps = max(1, round(warmup_fraction * n_steps))
    decay_steps = max(1, round(decay_fraction * n_steps))
    decay_start = n_steps - decay_steps
    factor = min(1.0, (step + 1) / warmup_steps)
    if step >= decay_start:
        factor = min(factor, (n_steps - step) / decay_steps)
    return factor


def make_optimizer(sae: TopKSAE, lr: float, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the SAE's parameters with ``cfg``'s settings; the fused kernel where there is
    one (on CPU about 5x the default multi-tensor step, which costs as much as a quarter of a
    training step at 16384 latents)."""
    fused = sae.device.type in ("cpu", "cuda")
    return torch.optim.Adam(sae.parameters(), lr=lr, betas=cfg.betas, eps=cfg.eps, fused=fused)


def training_step(
    sae: TopKSAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    dead_mask: torch.Tensor | None = None,
    *,
    autocast: bool = False,
    grad_clip_norm: float = 1.0,
) -> tuple[ForwardOutput, torch.Tensor]:
    """One optimisation step on the batch ``x`` ``(batch, d_model)`` float32; returns the forward
    output and the loss. ``dead_mask`` ``(n_latents,)`` bool enables the AuxK loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = sae(x, dead_mask=dead_mask)
    loss = out.loss.float() + sae.cfg.auxk_coef * out.auxk_loss.float()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if sae.unit_norm_decoder:
        sae.remove_gradient_parallel_to_decoder_directions()
    if grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip_norm)
    optimizer.step()
    if sae.unit_norm_decoder:
        sae.set_decoder_norm_to_unit_norm()
    return out, loss


@torch.no_grad()
def evaluate(sae: TopKSAE, tokens: torch.Tensor, batch_size: int = 4096) -> dict:
    """Reconstruction metrics of ``sae`` (in eval mode, as used after training) on ``tokens``
    ``(n, d_model)``.

    Returns MSE (squared error summed over d_model, mean over tokens), FVU against the mean of
    all ``tokens``, L0 (mean number of non-zero latents per token), the share of latents that
    never fire on ``tokens``, and ``fvu_stored``: the FVU when only the ``k_store`` latents per
    token that `encode` returns are decoded (what downstream stages see; the same as the FVU
    except for ``relu_l1``, whose forward uses every active latent). Besides, SAEBench's
    reconstruction and density metrics (`protsae.sae.quality.RECONSTRUCTION_METRICS`) of that
    stored reconstruction, from the same pass (the values of `reconstruction_metrics`).
    """
    was_training = sae.training
    sae.eval()
    mean64 = tokens.mean(0, dtype=torch.float64)
    mean = mean64.float().to(sae.device)
    saebench = ReconstructionSums(sae.cfg.n_latents, mean64)
    squared_error = stored_squared_error = total_variance = non_zero = 0.0
    fired = torch.zeros(sae.cfg.n_latents, dtype=torch.bool, device=sae.device)
    for start in range(0, len(tokens), batch_size):
        x = tokens[start : start + batch_size].to(sae.device).float()
        out = sae(x)
        squared_error += float((x - out.sae_out).pow(2).sum())
        if sae.encode_truncates:
            values, indices = sae.encode(x)
            stored = sae.decode(values, indices, x=x)
            stored_squared_error += float((x - stored).pow(2).sum())
        else:
            # In eval mode the forward selects as `encode` does: its output is the stored one.
            stored, values, indices = out.sae_out, out.latent_acts, out.latent_indices
            stored_squared_error = squared_error
        saebench.add(x, stored, values, indices)
        total_variance += float((x - mean).pow(2).sum())
        non_zero += float(out.l0) * len(x)
        fired |= out.fired
    sae.train(was_training)
    n = len(tokens)
    quality = saebench.result()
    return {
        "mse": squared_error / n,
        "fvu": squared_error / total_variance,
        "fvu_stored": stored_squared_error / total_variance,
        "l0": non_zero / n,
        "never_fired_share": float((~fired).float().mean()),
        "n_tokens": n,
        **{key: quality[key] for key in RECONSTRUCTION_METRICS},
    }


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _plot_history(path: Path, history: list[dict], title: str | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tokens = [row["tokens"] for row in history]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_fvu, ax_dead = fig.subplots(1, 2)
    ax_fvu.plot(tokens, [row["fvu"] for row in history])
    ax_fvu.set_yscale("log")
    ax_fvu.set_xlabel("training tokens")
    ax_fvu.set_ylabel("FVU (training batch)")
    ax_dead.plot(tokens, [row["dead_share"] for row in history])
    ax_dead.set_xlabel("training tokens")
    ax_dead.set_ylabel("share of dead latents")
    ax_dead.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


class DeadLatents:
    """Tokens since each latent last fired, and the dead mask that turns the AuxK loss on.

    A latent is dead once it has not fired for ``threshold`` tokens. Whether any is dead decides
    whether the step gets a mask, and reading that costs a device-to-host sync, so it is read
    only now and then (`mask`). The count of the longest-silent latent grows by at most one batch
    per step: a read that finds none dead proves none can be for the next ``ceil((threshold -
    longest) / batch_size)`` steps, which then get no mask without computing one. A read that
    finds some dead passes the mask every step until the next read, ``recheck_every`` steps on.
    Should the dead latents all fire meanwhile, the steps get an empty mask instead of none,
    which trains to the same bits (`test_an_empty_dead_mask_trains_like_none`): the AuxK loss is
    then exactly 0 and its gradients zeros.
    """

    def __init__(self, n_latents: int, threshold: int, batch_size: int, recheck_every: int, device: torch.device):
        self.tokens_since_fired = torch.zeros(n_latents, dtype=torch.int64, device=device)
        """``(n_latents,)`` int64: training tokens since each latent last fired."""
        self.threshold = threshold
        self.batch_size = batch_size
        self.recheck_every = recheck_every
        self._next_read = 0
        self._some_dead = False

    def mask(self, step: int) -> torch.Tensor | None:
        """``(n_latents,)`` bool marking the dead latents before step ``step`` (steps in
        increasing order), or None where none can be dead."""
        if step >= self._next_read:
            self._read(step)
        return self.tokens_since_fired >= self.threshold if self._some_dead else None

    def _read(self, step: int) -> None:
        """The host sync: whether any latent is dead before ``step``, and when to read next."""
        longest_silence = int(self.tokens_since_fired.max())
        self._some_dead = longest_silence >= self.threshold
        self._next_read = step + (
            self.recheck_every if self._some_dead
            else math.ceil((self.threshold - longest_silence) / self.batch_size)
        )

    def update(self, n_tokens: int, fired: torch.Tensor) -> None:
        """Count a step of ``n_tokens`` (at most ``batch_size``) in which ``fired`` ``(n_latents,)``
        bool fired."""
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired.masked_fill_(fired, 0)

    def share(self) -> float:
        """Share of the latents dead now."""
        return float((self.tokens_since_fired >= self.threshold).float().mean())


@dataclass
class _Run:
    """What a training run carries from step to step, and its checkpoint saves."""

    sae: TopKSAE
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    dead: DeadLatents
    step: int = 0
    """Steps done (= batches of the stream consumed)."""
    tokens_seen: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    """Time spent in the step loop, by every call that worked on this run."""


def _run_identity(shard_paths: list[str], shard_checksums: list[str], sae_config: SAEConfig,
                  cfg: TrainConfig) -> dict:
    """What a checkpoint must agree on to be resumed by this run: the settings, and the data by
    content (the shards' checksums), not only by path, since a rebuilt cache reuses the paths."""
    train = {key: value for key, value in asdict(cfg).items() if key not in _RESUMABLE_CHANGES}
    return {"sae": asdict(sae_config), "train": train, "shard_paths": shard_paths, "shard_sha256": shard_checksums}


def _save_checkpoint(path: Path, identity: dict, run: _Run, train_seconds: float) -> None:
    """Write ``run``'s state, with the torch RNG and ``identity``, atomically to ``path``."""
    state = {
        "version": CHECKPOINT_VERSION,
        "identity": identity,
        "step": run.step,
        "tokens_seen": run.tokens_seen,
        "sae": run.sae.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "tokens_since_fired": run.dead.tokens_since_fired,
        "torch_rng": torch.get_rng_state(),
        "history": run.history,
        "train_seconds": train_seconds,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _checkpoint_differences(state: dict, identity: dict) -> list[str]:
    """What makes a saved run another run than ``identity``'s (empty when it can be resumed)."""
    if state.get("version") != CHECKPOINT_VERSION:
        return [f"checkpoint version {state.get('version')}, this code reads {CHECKPOINT_VERSION}"]
    saved = state["identity"]
    differences = [
        f"{part}.{key}" for part in ("sae", "train") for key in identity[part]
        if saved[part].get(key) != identity[part][key]
    ]
    if saved["shard_paths"] != identity["shard_paths"]:
        differences.append("the training shards")
    elif saved.get("shard_sha256") != identity["shard_sha256"]:
        differences.append("the training shards' content (their checksums)")
    return differences


def _load_checkpoint(path: Path, identity: dict, run: _Run) -> bool:
    """Restore ``run`` and the torch RNG from ``path`` and return True; a checkpoint of another
    run (other settings, other data) is set aside as ``checkpoint.stale.pt`` with a warning
    naming what differs, and False is returned: the run starts afresh."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    differences = _checkpoint_differences(state, identity)
    if differences:
        stale = path.with_name(STALE_CHECKPOINT_FILE)
        path.replace(stale)
        logger.warning("not resuming from %s: it was written by another run (%s); moved it to %s and "
                       "training from scratch", path, ", ".join(differences), stale)
        return False
    run.sae.load_state_dict(state["sae"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.dead.tokens_since_fired.copy_(state["tokens_since_fired"])
    torch.set_rng_state(state["torch_rng"])
    run.step, run.tokens_seen = state["step"], state["tokens_seen"]
    run.history, run.train_seconds = state["history"], state["train_seconds"]
    return True


def _start(
    stream: ActivationStream,
    sae_config: SAEConfig,
    cfg: TrainConfig,
    lr: float,
    n_steps: int,
    device: torch.device,
    checkpoint_path: Path,
    identity: dict,
) -> tuple[_Run, Iterator[torch.Tensor]]:
    """The run to go on with, resumed from ``checkpoint_path`` if there is one and else freshly
    initialised on the stream's first batches, and the stream's batches from its next step on."""
    sae = make_sae(sae_config, device=device)
    optimizer = make_optimizer(sae, lr, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, n_steps, cfg.warmup_fraction, cfg.decay_fraction)
    )
    dead = DeadLatents(sae_config.n_latents, sae_config.dead_tokens_threshold, cfg.batch_size, cfg.log_every, device)
    run = _Run(sae, optimizer, scheduler, dead)
    # A killed run may have died while writing a checkpoint; its last complete one still counts.
    for stale in remove_stale_temporaries(checkpoint_path.parent) if checkpoint_path.parent.is_dir() else []:
        logger.info("removed %s, left by an interrupted write", stale)
    if checkpoint_path.exists() and _load_checkpoint(checkpoint_path, identity, run):
        logger.info(
            "resuming from %s at step %d of %d (%d tokens seen)", checkpoint_path, run.step, n_steps, run.tokens_seen
        )
        # The stream is deterministic: skip the batches the interrupted run consumed.
        return run, stream.batches(start=run.step)
    batches = stream.batches()
    # The initialisation batches are trained on too; they are ordinary batches of the stream.
    init_batches = list(itertools.islice(batches, math.ceil(cfg.init_tokens / cfg.batch_size)))
    sae.initialize(torch.cat(init_batches).to(device).float())
    return run, itertools.chain(init_batches, batches)


def _train_steps(
    run: _Run,
    batches: Iterator[torch.Tensor],
    cfg: TrainConfig,
    n_steps: int,
    checkpoint_path: Path,
    identity: dict,
    progress: bool,
    stop_after_steps: int | None,
) -> bool:
    """Train ``run`` from its step to the last one, recording history rows and checkpointing as
    ``cfg`` says; True when the run is complete, False when it stopped after
    ``stop_after_steps`` steps (with a checkpoint)."""
    device = run.sae.device
    use_bf16 = cfg.autocast == "bf16"
    first_step = run.step
    checkpoint_every = cfg.checkpoint_every if cfg.checkpoint_every is not None else max(1, n_steps // 20)
    checkpoint_seconds = 60.0 * cfg.checkpoint_minutes if cfg.checkpoint_minutes is not None else math.inf
    start_time = last_log_time = last_checkpoint_time = time.perf_counter()
    last_log_tokens = run.tokens_seen
    # About 200 points on the loss curve, whatever the run length.
    record_every = max(1, min(cfg.log_every, n_steps // 200))
    bar = tqdm(total=n_steps, initial=first_step, unit="step", disable=not progress, desc="SAE", mininterval=2.0)
    for step in range(first_step, n_steps):
        x = next(batches).to(device, non_blocking=True).float()
        dead_mask = run.dead.mask(step)
        out, loss = training_step(
            run.sae, run.optimizer, x, dead_mask, autocast=use_bf16, grad_clip_norm=cfg.grad_clip_norm
        )
        run.scheduler.step()
        run.tokens_seen += len(x)
        run.dead.update(len(x), out.fired)
        run.step = step + 1

        last_step = run.step == n_steps
        logging_step = run.step % cfg.log_every == 0 or last_step
        if run.step % record_every == 0 or logging_step:
            now = time.perf_counter()
            row = {
                "step": run.step,
                "tokens": run.tokens_seen,
                "lr": run.scheduler.get_last_lr()[0],
                "loss": loss.item(),
                "mse": out.mse.item(),
                "fvu": out.fvu.item(),
                "l0": out.l0.item(),
                "dead_share": dead_mask.float().mean().item() if dead_mask is not None else 0.0,
                "auxk_loss": out.auxk_loss.item(),
            }
            run.history.append(row)
            # Speed goes to the log only: the history is a result, identical on every rerun.
            rate = (run.tokens_seen - last_log_tokens) / max(now - last_log_time, 1e-9)
            last_log_time, last_log_tokens = now, run.tokens_seen
        if logging_step:
            logger.info(
                "tokens %d (%.0f/s): loss %.4g mse %.4g fvu %.4f L0 %.1f dead %.3f auxk %.4f",
                row["tokens"], rate, row["loss"], row["mse"], row["fvu"], row["l0"],
                row["dead_share"], row["auxk_loss"],
            )
            bar.set_postfix(fvu=f"{row['fvu']:.4f}", dead=f"{row['dead_share']:.3f}")
        bar.update(1)

        stopping = stop_after_steps is not None and run.step - first_step >= stop_after_steps
        due = (checkpoint_every > 0 and run.step % checkpoint_every == 0) or (
            time.perf_counter() - last_checkpoint_time >= checkpoint_seconds
        )
        if not last_step and (stopping or due):
            _save_checkpoint(checkpoint_path, identity, run, run.train_seconds + time.perf_counter() - start_time)
            last_checkpoint_time = time.perf_counter()
            if stopping:
                bar.close()
                logger.info("stopping after step %d of %d; %s resumes the run", run.step, n_steps, checkpoint_path)
                return False
    bar.close()
    run.train_seconds += time.perf_counter() - start_time
    return True


def _finish(
    run: _Run,
    shard_paths: list[str],
    cfg: TrainConfig,
    lr: float,
    device: torch.device,
    out_dir: Path,
    title: str | None,
) -> dict:
    """Evaluate the trained SAE on the held-out tokens, write it and its metrics, history and
    loss curve to ``out_dir``, delete the checkpoint; returns the metrics."""
    sae, sae_config = run.sae, run.sae.cfg
    if not sae.unit_norm_decoder:
        # An exact reparametrisation, so that saved latents are on the scale of unit-norm rows.
        sae.fold_decoder_norms()
    # Held-out tokens stay in their stored precision until evaluated, batch by batch.
    heldout = read_heldout(shard_paths, cfg.holdout_fraction, cfg.holdout_seed, cfg.eval_tokens, dtype=None)
    if len(heldout) == 0:
        logger.warning("no held-out tokens (holdout_fraction=%s): evaluation skipped", cfg.holdout_fraction)
        heldout_metrics = dict.fromkeys(["mse", "fvu", "fvu_stored", "l0", "never_fired_share",
                                         *RECONSTRUCTION_METRICS], None) | {"n_tokens": 0}
    else:
        heldout_metrics = evaluate(sae, heldout, cfg.batch_size)
    dead_share = run.dead.share()
    metrics = {
        "heldout_mse": heldout_metrics["mse"],
        "heldout_fvu": heldout_metrics["fvu"],
        "heldout_fvu_stored": heldout_metrics["fvu_stored"],
        "heldout_l0": heldout_metrics["l0"],
        "heldout_never_fired_share": heldout_metrics["never_fired_share"],
        "heldout_tokens": heldout_metrics["n_tokens"],
        **{f"heldout_{key}": heldout_metrics[key] for key in RECONSTRUCTION_METRICS},
        **dictionary_metrics(sae),
        "dead_share": dead_share,
        "dead_tokens_threshold": sae_config.dead_tokens_threshold,
        "train_final_fvu": run.history[-1]["fvu"],
        "tokens_seen": run.tokens_seen,
        "steps": run.step,
        "train_seconds": run.train_seconds,
        "tokens_per_s": run.tokens_seen / run.train_seconds,
    }
    logger.info("held-out: %s; dead share %.3f",
                {key: value for key, value in heldout_metrics.items() if key != "density_histogram"}, dead_share)

    sae.save(
        out_dir,
        extra_config={
            "train": {**asdict(cfg), "lr": lr, "device": str(device)},
            "data": {"shard_paths": shard_paths, "tokens_seen": run.tokens_seen},
        },
    )
    write_json(out_dir / "metrics.json", metrics)
    _write_history(out_dir / "history.csv", run.history)
    _plot_history(out_dir / "loss_curve.png", run.history, title)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    (out_dir / STALE_CHECKPOINT_FILE).unlink(missing_ok=True)
    return metrics


def train_sae(
    shard_paths: Sequence[str | os.PathLike],
    sae_config: SAEConfig,
    train_config: TrainConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    title: str | None = None,
    stop_after_steps: int | None = None,
    shard_checksums: Sequence[str] | None = None,
) -> dict | None:
    """Train an SAE on the activations in ``shard_paths`` and write it, with its evaluation, to
    ``out_dir``: ``sae.safetensors``, ``config.json`` (SAE and training settings, provenance),
    ``metrics.json``, ``history.csv`` and ``loss_curve.png`` (titled ``title``).

    While training, ``checkpoint.pt`` in ``out_dir`` holds the state of the run (weights,
    optimiser, schedule, dead-latent counters, RNG, history, batches consumed), rewritten every
    ``checkpoint_every`` steps or ``checkpoint_minutes``; a call that finds one resumes from it
    and deletes it once the outputs are written. A checkpoint of other settings or other data
    (``shard_checksums``, the manifest's; computed from the files when not given) is never
    resumed: it is set aside as ``checkpoint.stale.pt`` with a warning, and training starts
    afresh. ``stop_after_steps`` ends the call after that many steps with a checkpoint and
    returns None (for time-limited jobs and tests).

    Returns the metrics written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    shard_paths = [str(p) for p in shard_paths]
    cfg = train_config
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    stream = ActivationStream(
        shard_paths,
        cfg.batch_size,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed,
        holdout_fraction=cfg.holdout_fraction,
        holdout_seed=cfg.holdout_seed,
        # Batches travel in their stored precision and are widened on the device.
        dtype=None,
    )
    if stream.d_model != sae_config.d_model:
        raise ValueError(f"shards have d_model={stream.d_model}, SAE config says {sae_config.d_model}")
    lr = cfg.lr if cfg.lr is not None else default_lr(sae_config.n_latents)
    n_steps = cfg.n_tokens // cfg.batch_size
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if shard_checksums is None:
        shard_checksums = [file_sha256(path) for path in shard_paths]
    identity = _run_identity(shard_paths, list(shard_checksums), sae_config, cfg)

    run, batches = _start(stream, sae_config, cfg, lr, n_steps, device, checkpoint_path, identity)
    logger.info(
        "training %s %s latents, k=%d, d_model=%d on %d shards: %d steps of %d tokens, lr %.3g, device %s",
        sae_config.variant, sae_config.n_latents, sae_config.k, sae_config.d_model, len(shard_paths), n_steps,
        cfg.batch_size, lr, device,
    )
    if not _train_steps(run, batches, cfg, n_steps, checkpoint_path, identity, progress, stop_after_steps):
        return None
    return _finish(run, shard_paths, cfg, lr, device, out_dir, title)
