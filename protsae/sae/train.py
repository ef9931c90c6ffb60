"""Train one SAE on cached activations and evaluate it on held-out sequences.

The loss is the variant's objective (for TopK and BatchTopK the batch FVU: squared error
normalised by the batch's total variance, Gao et al.'s "normalised MSE"; see `ForwardOutput.loss`)
plus ``auxk_coef`` times the AuxK loss. Being scale-free, it trains with the same learning rate
whatever the activation norm of the layer; the plain MSE is logged beside it. Each step
(`training_step`): forward, backward, remove the decoder gradients parallel to the decoder rows,
clip the gradient norm, Adam step, renormalise the decoder rows (the last two steps only where
the variant keeps unit-norm decoder rows).

A run checkpoints itself (``checkpoint.pt`` in the output directory, written atomically) and
resumes from it when started again; the data stream is deterministic for a seed and resumes by
fast-forwarding (`ActivationStream.batches`), so an interrupted and resumed run ends with the same
weights as an uninterrupted one on CPU.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from protsae.activations.stream import ActivationStream, read_heldout
from protsae.files import atomic_path, remove_stale_temporaries, write_json
from protsae.sae.config import SAEConfig, TrainConfig
from protsae.sae.variants import ForwardOutput, TopKSAE, make_sae

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
# Settings that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"device", "log_every", "checkpoint_every", "checkpoint_minutes"}


def default_lr(n_latents: int) -> float:
    """Gao et al.'s learning-rate scaling with dictionary size: 2e-4 / sqrt(n_latents / 16384)."""
    return 2e-4 / math.sqrt(n_latents / 2**14)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    except for ``relu_l1``, whose forward uses every active latent).
    """
    was_training = sae.training
    sae.eval()
    mean = tokens.mean(0, dtype=torch.float64).float().to(sae.device)
    squared_error = stored_squared_error = total_variance = non_zero = 0.0
    fired = torch.zeros(sae.cfg.n_latents, dtype=torch.bool, device=sae.device)
    for start in range(0, len(tokens), batch_size):
        x = tokens[start : start + batch_size].to(sae.device).float()
        out = sae(x)
        squared_error += float((x - out.sae_out).pow(2).sum())
        if sae.encode_truncates:
            stored = sae.decode(*sae.encode(x), x=x)
            stored_squared_error += float((x - stored).pow(2).sum())
        else:
            stored_squared_error = squared_error
        total_variance += float((x - mean).pow(2).sum())
        non_zero += float(out.l0) * len(x)
        fired |= out.fired
    sae.train(was_training)
    n = len(tokens)
    return {
        "mse": squared_error / n,
        "fvu": squared_error / total_variance,
        "fvu_stored": stored_squared_error / total_variance,
        "l0": non_zero / n,
        "never_fired_share": float((~fired).float().mean()),
        "n_tokens": n,
    }


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
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


def _run_identity(shard_paths: list[str], sae_config: SAEConfig, cfg: TrainConfig) -> dict:
    """What a checkpoint must agree on to be resumed by this run."""
    train = {key: value for key, value in asdict(cfg).items() if key not in _RESUMABLE_CHANGES}
    return {"sae": asdict(sae_config), "train": train, "shard_paths": shard_paths}


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, identity: dict) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')}, this code reads {CHECKPOINT_VERSION}")
    saved = state["identity"]
    differences = [
        f"{part}.{key}" for part in ("sae", "train") for key in identity[part]
        if saved[part].get(key) != identity[part][key]
    ] + (["shard_paths"] if saved["shard_paths"] != identity["shard_paths"] else [])
    if differences:
        raise ValueError(
            f"{path} was written by a run with other settings ({', '.join(differences)}); "
            "delete it to train from scratch"
        )
    return state


def train_sae(
    shard_paths: Sequence[str | os.PathLike],
    sae_config: SAEConfig,
    train_config: TrainConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    title: str | None = None,
    stop_after_steps: int | None = None,
) -> dict | None:
    """Train an SAE on the activations in ``shard_paths`` and write it, with its evaluation, to
    ``out_dir``: ``sae.safetensors``, ``config.json`` (SAE and training settings, provenance),
    ``metrics.json``, ``history.csv`` and ``loss_curve.png`` (titled ``title``).

    While training, ``checkpoint.pt`` in ``out_dir`` holds the state of the run (weights,
    optimiser, schedule, dead-latent counters, RNG, history, batches consumed), rewritten every
    ``checkpoint_every`` steps or ``checkpoint_minutes``; a call that finds one resumes from it
    and deletes it once the outputs are written. ``stop_after_steps`` ends the call after that
    many steps with a checkpoint and returns None (for time-limited jobs and tests).

    Returns the metrics written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    shard_paths = [str(p) for p in shard_paths]
    cfg = train_config
    device = _device(cfg.device)
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

    sae = make_sae(sae_config, device=device)
    lr = cfg.lr if cfg.lr is not None else default_lr(sae_config.n_latents)
    optimizer = make_optimizer(sae, lr, cfg)
    n_steps = cfg.n_tokens // cfg.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, n_steps, cfg.warmup_fraction, cfg.decay_fraction)
    )
    use_bf16 = cfg.autocast == "bf16"
    tokens_since_fired = torch.zeros(sae_config.n_latents, dtype=torch.int64, device=device)
    history: list[dict] = []
    tokens_seen = 0
    first_step = 0
    train_seconds_before = 0.0

    checkpoint_path = out_dir / CHECKPOINT_FILE
    identity = _run_identity(shard_paths, sae_config, cfg)
    # A killed run may have died while writing a checkpoint; its last complete one still counts.
    for stale in remove_stale_temporaries(out_dir) if out_dir.is_dir() else []:
        logger.info("removed %s, left by an interrupted write", stale)
    if checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, identity)
        sae.load_state_dict(state["sae"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        tokens_since_fired.copy_(state["tokens_since_fired"])
        torch.set_rng_state(state["torch_rng"])
        history, tokens_seen, first_step = state["history"], state["tokens_seen"], state["step"]
        train_seconds_before = state["train_seconds"]
        # The stream is deterministic: skip the batches the interrupted run consumed.
        batches = stream.batches(start=first_step)
        logger.info(
            "resuming from %s at step %d of %d (%d tokens seen)", checkpoint_path, first_step, n_steps, tokens_seen
        )
    else:
        batches = stream.batches()
        # The initialisation batches are trained on too; they are ordinary batches of the stream.
        init_batches = list(itertools.islice(batches, math.ceil(cfg.init_tokens / cfg.batch_size)))
        sae.initialize(torch.cat(init_batches).to(device).float())
        batches = itertools.chain(init_batches, batches)

    checkpoint_every = cfg.checkpoint_every if cfg.checkpoint_every is not None else max(1, n_steps // 20)
    checkpoint_seconds = 60.0 * cfg.checkpoint_minutes if cfg.checkpoint_minutes is not None else math.inf

    logger.info(
        "training %s %s latents, k=%d, d_model=%d on %d shards: %d steps of %d tokens, lr %.3g, device %s",
        sae_config.variant, sae_config.n_latents, sae_config.k, sae_config.d_model, len(shard_paths), n_steps,
        cfg.batch_size, lr, device,
    )
    start_time = last_log_time = last_checkpoint_time = time.perf_counter()
    last_log_tokens = tokens_seen
    # About 200 points on the loss curve, whatever the run length.
    record_every = max(1, min(cfg.log_every, n_steps // 200))
    bar = tqdm(total=n_steps, initial=first_step, unit="step", disable=not progress, desc="SAE", mininterval=2.0)
    for step in range(first_step, n_steps):
        x = next(batches).to(device, non_blocking=True).float()
        dead_mask = tokens_since_fired >= sae_config.dead_tokens_threshold
        any_dead = bool(dead_mask.any())
        out, loss = training_step(
            sae, optimizer, x, dead_mask if any_dead else None, autocast=use_bf16, grad_clip_norm=cfg.grad_clip_norm
        )
        scheduler.step()

        tokens_seen += len(x)
        tokens_since_fired += len(x)
        tokens_since_fired[out.fired] = 0

        last_step = step + 1 == n_steps
        logging_step = (step + 1) % cfg.log_every == 0 or last_step
        if (step + 1) % record_every == 0 or logging_step:
            now = time.perf_counter()
            row = {
                "step": step + 1,
                "tokens": tokens_seen,
                "lr": scheduler.get_last_lr()[0],
                "loss": loss.item(),
                "mse": out.mse.item(),
                "fvu": out.fvu.item(),
                "l0": out.l0.item(),
                "dead_share": dead_mask.float().mean().item(),
                "auxk_loss": out.auxk_loss.item(),
                "tokens_per_s": (tokens_seen - last_log_tokens) / max(now - last_log_time, 1e-9),
            }
            history.append(row)
            last_log_time, last_log_tokens = now, tokens_seen
        if logging_step:
            logger.info(
                "tokens %d (%.0f/s): loss %.4g mse %.4g fvu %.4f L0 %.1f dead %.3f auxk %.4f",
                row["tokens"], row["tokens_per_s"], row["loss"], row["mse"], row["fvu"], row["l0"],
                row["dead_share"], row["auxk_loss"],
            )
            bar.set_postfix(fvu=f"{row['fvu']:.4f}", dead=f"{row['dead_share']:.3f}")
        bar.update(1)

        stopping = stop_after_steps is not None and step + 1 - first_step >= stop_after_steps
        due = (checkpoint_every > 0 and (step + 1) % checkpoint_every == 0) or (
            time.perf_counter() - last_checkpoint_time >= checkpoint_seconds
        )
        if not last_step and (stopping or due):
            _save_checkpoint(checkpoint_path, {
                "version": CHECKPOINT_VERSION,
                "identity": identity,
                "step": step + 1,
                "tokens_seen": tokens_seen,
                "sae": sae.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "tokens_since_fired": tokens_since_fired,
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "train_seconds": train_seconds_before + time.perf_counter() - start_time,
            })
            last_checkpoint_time = time.perf_counter()
            if stopping:
                bar.close()
                logger.info("stopping after step %d of %d; %s resumes the run", step + 1, n_steps, checkpoint_path)
                return None
    bar.close()
    train_seconds = train_seconds_before + time.perf_counter() - start_time

    if not sae.unit_norm_decoder:
        # An exact reparametrisation, so that saved latents are on the scale of unit-norm rows.
        sae.fold_decoder_norms()
    # Held-out tokens stay in their stored precision until evaluated, batch by batch.
    heldout = read_heldout(shard_paths, cfg.holdout_fraction, cfg.holdout_seed, cfg.eval_tokens, dtype=None)
    if len(heldout) == 0:
        logger.warning("no held-out tokens (holdout_fraction=%s): evaluation skipped", cfg.holdout_fraction)
        heldout_metrics = dict.fromkeys(["mse", "fvu", "fvu_stored", "l0", "never_fired_share"], None) | {"n_tokens": 0}
    else:
        heldout_metrics = evaluate(sae, heldout, cfg.batch_size)
    dead_share = float((tokens_since_fired >= sae_config.dead_tokens_threshold).float().mean())
    metrics = {
        "heldout_mse": heldout_metrics["mse"],
        "heldout_fvu": heldout_metrics["fvu"],
        "heldout_fvu_stored": heldout_metrics["fvu_stored"],
        "heldout_l0": heldout_metrics["l0"],
        "heldout_never_fired_share": heldout_metrics["never_fired_share"],
        "heldout_tokens": heldout_metrics["n_tokens"],
        "dead_share": dead_share,
        "dead_tokens_threshold": sae_config.dead_tokens_threshold,
        "train_final_fvu": history[-1]["fvu"],
        "tokens_seen": tokens_seen,
        "steps": n_steps,
        "train_seconds": train_seconds,
        "tokens_per_s": tokens_seen / train_seconds,
    }
    logger.info("held-out: %s; dead share %.3f", heldout_metrics, dead_share)

    sae.save(
        out_dir,
        extra_config={
            "train": {**asdict(cfg), "lr": lr, "device": str(device)},
            "data": {"shard_paths": shard_paths, "tokens_seen": tokens_seen},
        },
    )
    write_json(out_dir / "metrics.json", metrics)
    _write_history(out_dir / "history.csv", history)
    _plot_history(out_dir / "loss_curve.png", history, title)
    checkpoint_path.unlink(missing_ok=True)
    return metrics
