"""The training loop: the step of each variant, checkpoints, and resumption after an interruption."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_shard
from safetensors.torch import load_file

from protsae.activations.manifest import file_sha256
from protsae.sae import train as trainer
from protsae.sae.config import SAEConfig
from protsae.sae.train import (
    CHECKPOINT_FILE,
    DeadLatents,
    TrainConfig,
    make_optimizer,
    train_sae,
    training_step,
)
from protsae.sae.variants import make_sae

REPO = Path(__file__).resolve().parents[2]


def write_data(tmp_path: Path, d_model: int = 16) -> list[Path]:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6000, d_model)) @ rng.normal(size=(d_model, d_model)) + 1.0).astype(np.float16)
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    write_shard(paths[0], [f"a{i}" for i in range(60)], [50] * 60, x[:3000])
    write_shard(paths[1], [f"b{i}" for i in range(60)], [50] * 60, x[3000:])
    return paths


def configs(variant: str = "topk", **train_overrides) -> tuple[SAEConfig, TrainConfig]:
    # Latents die after 8 silent steps, so the AuxK loss and the dead-latent counters take part.
    sae_cfg = SAEConfig(
        d_model=16, n_latents=64, k=4, variant=variant, dead_tokens_threshold=512, normalize_input=True,
        matryoshka_prefixes=(0.25, 0.5, 1.0),
    )
    train = {
        "n_tokens": 40 * 64, "batch_size": 64, "lr": 3e-3, "holdout_fraction": 0.1, "eval_tokens": 500,
        "shuffle_buffer": 512, "log_every": 10, "device": "cpu", "seed": 3, "checkpoint_every": 7, "autocast": "none",
    }
    train.update(train_overrides)
    return sae_cfg, TrainConfig(**train)


def assert_same_run(run: Path, reference: Path) -> None:
    got, expected = load_file(str(run / "sae.safetensors")), load_file(str(reference / "sae.safetensors"))
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert not (run / CHECKPOINT_FILE).exists()
    assert {p.name for p in run.iterdir()} == {p.name for p in reference.iterdir()}
    # Byte-identical: no timing column in the history.
    assert (run / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    assert "tokens_per_s" not in (run / "history.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "variant, autocast",
    [("topk", "none"), ("topk", "bf16"), ("batchtopk", "none"), ("matryoshka", "none"), ("relu_l1", "none")],
)
def test_interrupted_runs_resume_to_identical_weights(tmp_path, variant, autocast, caplog):
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs(variant, autocast=autocast)
    metrics = train_sae(shards, sae_cfg, train_cfg, tmp_path / "full", progress=False)
    assert not (tmp_path / "full" / CHECKPOINT_FILE).exists()

    run = tmp_path / "interrupted"
    assert train_sae(shards, sae_cfg, train_cfg, run, progress=False, stop_after_steps=17) is None
    assert {p.name for p in run.iterdir()} == {CHECKPOINT_FILE}
    assert torch.load(run / CHECKPOINT_FILE, weights_only=True)["step"] == 17
    # A second interruption; the device may change between calls.
    resumed_cfg = TrainConfig(**{**vars(train_cfg), "device": "auto", "log_every": 5})
    assert train_sae(shards, sae_cfg, resumed_cfg, run, progress=False, stop_after_steps=10) is None
    with caplog.at_level("INFO", logger="protsae.sae.train"):
        resumed = train_sae(shards, sae_cfg, train_cfg, run, progress=False)
    assert "resuming from" in caplog.text and "at step 27 of 40" in caplog.text
    assert_same_run(run, tmp_path / "full")
    assert {k: v for k, v in resumed.items() if "seconds" not in k and "per_s" not in k} == {
        k: v for k, v in metrics.items() if "seconds" not in k and "per_s" not in k
    }


def test_a_crash_between_checkpoints_resumes_from_the_last_one(tmp_path, monkeypatch):
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs()
    train_sae(shards, sae_cfg, train_cfg, tmp_path / "full", progress=False)
    calls = itertools.count(1)
    original = trainer.training_step

    def crash_at_step_24(*args, **kwargs):
        if next(calls) == 24:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "training_step", crash_at_step_24)
    with pytest.raises(RuntimeError, match="killed"):
        train_sae(shards, sae_cfg, train_cfg, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] == 21
    monkeypatch.undo()
    train_sae(shards, sae_cfg, train_cfg, tmp_path / "run", progress=False)
    assert_same_run(tmp_path / "run", tmp_path / "full")


KILLED_RUN = """
import sys
import torch
torch.set_num_threads(1)
sys.path[:0] = {tests!r}
from test_train import configs
from protsae.sae.train import train_sae
sae_cfg, train_cfg = configs(n_tokens=200 * 64, checkpoint_every=3)
train_sae({shards!r}, sae_cfg, train_cfg, {out!r}, progress=False)
"""


def test_a_killed_process_resumes_to_identical_weights(tmp_path):
    shards = [str(p) for p in write_data(tmp_path)]
    # The killed run checkpoints every 3 steps, its resumption and the reference every 7.
    sae_cfg, train_cfg = configs(n_tokens=200 * 64)
    run = tmp_path / "killed"
    script = KILLED_RUN.format(tests=[str(REPO / "tests" / "sae"), str(REPO / "tests")], shards=shards, out=str(run))
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not (run / CHECKPOINT_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run / "sae.safetensors").exists()
    train_sae(shards, sae_cfg, train_cfg, run, progress=False)
    train_sae(shards, sae_cfg, train_cfg, tmp_path / "full", progress=False)
    assert_same_run(run, tmp_path / "full")


def test_a_checkpoint_of_other_settings_is_set_aside(tmp_path, caplog):
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs()
    train_sae(shards, sae_cfg, train_cfg, tmp_path / "run", progress=False, stop_after_steps=5)
    other = TrainConfig(**{**vars(train_cfg), "seed": 4})
    with caplog.at_level(logging.WARNING, logger="protsae"):
        train_sae(shards, sae_cfg, other, tmp_path / "run", progress=False)
    assert "another run (train.seed)" in caplog.text and "checkpoint.stale.pt" in caplog.text
    train_sae(shards, sae_cfg, other, tmp_path / "fresh", progress=False)
    assert_same_run(tmp_path / "run", tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in (tmp_path / "fresh").iterdir())


def test_a_checkpoint_of_other_data_at_the_same_paths_is_never_resumed(tmp_path, caplog):
    """The cache was rebuilt (another sampling seed, say) under the same shard paths: the
    checkpoint of the old data must not be resumed, with or without the manifest's checksums."""
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs()
    for checksums in (None, "manifest"):
        run = tmp_path / f"run_{checksums}"
        train_sae(shards, sae_cfg, train_cfg, run, progress=False, stop_after_steps=5)
        rng = np.random.default_rng(1)
        x = (rng.normal(size=(6000, 16)) * 3).astype(np.float16)
        write_shard(shards[0], [f"a{i}" for i in range(60)], [50] * 60, x[:3000])
        given = [file_sha256(path) for path in shards] if checksums else None
        with caplog.at_level(logging.WARNING, logger="protsae"):
            train_sae(shards, sae_cfg, train_cfg, run, progress=False, shard_checksums=given)
        assert "the training shards' content" in caplog.text
        train_sae(shards, sae_cfg, train_cfg, tmp_path / f"fresh_{checksums}", progress=False)
        assert_same_run(run, tmp_path / f"fresh_{checksums}")
        shards = write_data(tmp_path)
        caplog.clear()


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka", "relu_l1"])
def test_training_step_keeps_the_decoder_constraint_of_its_variant(variant):
    sae_cfg, train_cfg = configs(variant)
    sae = make_sae(sae_cfg)
    x = torch.randn(64, 16) + 2.0
    sae.initialize(x)
    optimizer = make_optimizer(sae, 1e-2, train_cfg)
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    out, loss = training_step(sae, optimizer, x, dead_mask=torch.arange(64) % 2 == 0, autocast=True)
    assert torch.isfinite(loss) and loss == out.loss.float() + sae_cfg.auxk_coef * out.auxk_loss.float()
    assert all(not torch.equal(p, before[name]) for name, p in sae.named_parameters())
    norms = sae.W_dec.detach().norm(dim=1)
    if variant == "relu_l1":
        assert not torch.allclose(norms, torch.ones(64))
    else:
        torch.testing.assert_close(norms, torch.ones(64))


def test_a_write_killed_midway_leaves_no_temporary_behind(tmp_path):
    """SIGKILL during a checkpoint write leaves atomic_path's temporary file; the rerun removes it."""
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs()
    run = tmp_path / "run"
    train_sae(shards, sae_cfg, train_cfg, run, progress=False, stop_after_steps=7)
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    train_sae(shards, sae_cfg, train_cfg, run, progress=False)
    train_sae(shards, sae_cfg, train_cfg, tmp_path / "full", progress=False)
    assert_same_run(run, tmp_path / "full")


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka", "relu_l1"])
@pytest.mark.parametrize("autocast", [False, True])
def test_an_empty_dead_mask_trains_like_none(variant, autocast):
    """What lets `DeadLatents` pass a mask for a while after the dead latents have fired."""
    sae_cfg, train_cfg = configs(variant)
    x = torch.randn(5, 64, 16, generator=torch.Generator().manual_seed(0)) + 2.0
    saes = [make_sae(sae_cfg), make_sae(sae_cfg)]
    optimizers = []
    for sae in saes:
        sae.initialize(x[0])
        optimizers.append(make_optimizer(sae, 1e-2, train_cfg))
    no_dead = torch.zeros(64, dtype=torch.bool)
    for batch in x:
        outs = [
            training_step(sae, optimizer, batch, dead_mask, autocast=autocast)
            for sae, optimizer, dead_mask in zip(saes, optimizers, [None, no_dead])
        ]
        assert torch.equal(outs[0][1], outs[1][1])
    for (name, got), expected in zip(saes[1].state_dict().items(), saes[0].state_dict().values()):
        assert torch.equal(got, expected), name


def test_dead_latents_masks_every_step_with_a_dead_latent_and_reads_rarely(monkeypatch):
    reads = []
    original = DeadLatents._read
    monkeypatch.setattr(DeadLatents, "_read", lambda self, step: (reads.append(step), original(self, step)))
    dead = DeadLatents(n_latents=32, threshold=1000, batch_size=64, recheck_every=10, device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    n_steps, masked_without_dead = 600, 0
    for step in range(n_steps):
        expected = dead.tokens_since_fired >= 1000
        mask = dead.mask(step)
        if expected.any():
            assert mask is not None and torch.equal(mask, expected), step
        elif mask is not None:
            assert not mask.any()
            masked_without_dead += 1
        # Phases in which latents fire often (none dies), rarely (some die), or not at all.
        rate = [0.5, 0.02, 0.0][step // 100 % 3]
        dead.update(64, torch.rand(32, generator=generator) < rate)
    # The first read proves the first ceil(1000 / 64) = 16 steps free of dead latents.
    assert reads[:2] == [0, 16]
    assert len(reads) < n_steps / 4 and masked_without_dead > 0


def test_a_run_without_dead_latents_reads_the_dead_mask_once(tmp_path, monkeypatch):
    reads = []
    original = DeadLatents._read
    monkeypatch.setattr(DeadLatents, "_read", lambda self, step: (reads.append(step), original(self, step)))
    shards = write_data(tmp_path)
    sae_cfg, train_cfg = configs(checkpoint_every=0)
    sae_cfg.dead_tokens_threshold = 40 * 64
    metrics = train_sae(shards, sae_cfg, train_cfg, tmp_path / "run", progress=False)
    assert metrics["steps"] == 40 and reads == [0]
