"""SAE training throughput, quality and memory on synthetic activations.

Measures, in one run:
  * training: protsae's step (`protsae.sae.train.training_step`: sparse encoder backward, gathered
    decoder, fused Adam; float32 and bf16 autocast) against a plain dense TopK step written here
    (dense encoder matmul, dense top-k scattered into a dense (batch, n_latents) z, dense decoder
    matmul, autograd backward, default Adam; float32), side by side: all three start from the same
    weights, take the same batches, steps interleaved in rotating order; tokens/s is the median
    step, FVU is measured on held-out tokens after the same token budget. Activations are drawn
    from a planted sparse dictionary, so the FVU means something. AuxK is off (no latent can die
    within the budget) and the learning rate constant, identical for all three.
  * decoding, per width and k: gathering the k selected decoder rows (``embedding_bag``) against
    scattering into a dense z and a dense matmul, forward plus backward.
  * peers (``--peers``): protsae against EleutherAI's sparsify and SAELens (benchmarks/peers.py;
    ``pip install -e ".[bench]"``) at width 16,384, k 32, d_model 512, batch 4096, float32 on
    CPU: the same planted batches, steps interleaved in rotating order, each library's own
    optimiser, learning rate and schedule (protsae's also at ``--lr``, constant, as above);
    tokens/s is the median step, FVU is held-out after ``--peer-steps`` steps.
  * peak RSS of `protsae.sae.train.train_sae` reading a Parquet cache (seq_id string, pos int32,
    act fixed_size_list<float16>[d_model], as the caching stage writes it) of 1x and 4x the size,
    each in a fresh subprocess; both train on the same number of tokens (one pass over the 4x
    cache, four over the 1x), so that only the cache size differs.

    python benchmarks/sae_train.py            # default grid, ~10 minutes on 2 cores
    python benchmarks/sae_train.py --quick    # one small configuration, ~1 minute
    python benchmarks/sae_train.py --peers    # only the peers' table, ~10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from protsae.sae.config import SAEConfig
from protsae.sae.train import (
    TrainConfig,
    _lr_factor,
    default_lr,
    evaluate,
    make_optimizer,
    train_sae,
    training_step,
)
from protsae.sae.variants import TopKSAE, make_sae

REPO = Path(__file__).resolve().parent.parent


class PlantedActivations:
    """Tokens ``offset + sum_i m_i a_i + noise`` over ``k_true`` of ``n_atoms`` random unit atoms
    ``a_i`` (with repetition), magnitudes ``m_i`` uniform in [0.5, 2], noise sd 0.05 per dimension."""

    def __init__(self, d_model: int, n_atoms: int, k_true: int, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)
        atoms = torch.randn(n_atoms, d_model, generator=self.generator)
        self.atoms = atoms / atoms.norm(dim=1, keepdim=True)
        self.offset = torch.randn(d_model, generator=self.generator)
        self.k_true = k_true

    def sample(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.atoms), (n, self.k_true), generator=self.generator)
        magnitudes = 0.5 + 1.5 * torch.rand(n, self.k_true, generator=self.generator)
        noise = 0.05 * torch.randn(n, self.atoms.shape[1], generator=self.generator)
        return F.embedding_bag(idx, self.atoms, per_sample_weights=magnitudes, mode="sum") + self.offset + noise


class DenseTopK(nn.Module):
    """The plain reference: the same TopK SAE, computed densely with autograd."""

    def __init__(self, sae: TopKSAE):
        super().__init__()
        self.k = sae.cfg.k
        for name in ("W_enc", "b_enc", "W_dec", "b_pre"):
            setattr(self, name, nn.Parameter(getattr(sae, name).detach().clone()))
        self.register_buffer("input_scale", sae.input_scale.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre_acts = F.linear(x * self.input_scale - self.b_pre, self.W_enc, self.b_enc)
        top_vals, top_idx = pre_acts.topk(self.k, dim=-1)
        z = torch.zeros_like(pre_acts).scatter(1, top_idx, top_vals.relu())
        x_hat = (z @ self.W_dec + self.b_pre) / self.input_scale
        return x_hat, (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()

    def step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, grad_clip_norm: float) -> None:
        _, fvu = self(x)
        optimizer.zero_grad(set_to_none=True)
        fvu.backward()
        with torch.no_grad():
            direction = self.W_dec / self.W_dec.norm(dim=1, keepdim=True)
            self.W_dec.grad -= (self.W_dec.grad * direction).sum(1, keepdim=True) * direction
        nn.utils.clip_grad_norm_(self.parameters(), grad_clip_norm)
        optimizer.step()
        with torch.no_grad():
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    def heldout_fvu(self, tokens: torch.Tensor, batch_size: int) -> float:
        return heldout_fvu(lambda x: self(x)[0], tokens, batch_size)


@torch.no_grad()
def heldout_fvu(reconstruct, tokens: torch.Tensor, batch_size: int) -> float:
    """Squared error over total variance of held-out ``tokens`` (the formula protsae reports),
    for the trainers that are not protsae's (`protsae.sae.train.evaluate` is)."""
    squared_error = sum(float((x - reconstruct(x)).pow(2).sum()) for x in tokens.split(batch_size))
    return squared_error / float((tokens - tokens.mean(0)).pow(2).sum())


def train_side_by_side(width: int, k: int, args, data: PlantedActivations, heldout: torch.Tensor) -> dict:
    cfg = SAEConfig(d_model=args.d_model, n_latents=width, k=k, dead_tokens_threshold=10**12, normalize_input=True)
    train_cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, device="cpu")
    protsae_fp32 = make_sae(cfg)
    protsae_fp32.initialize(data.sample(args.batch_size))
    protsae_bf16 = make_sae(cfg)
    protsae_bf16.load_state_dict(protsae_fp32.state_dict())
    reference = DenseTopK(protsae_fp32)
    plain_adam = torch.optim.Adam(reference.parameters(), lr=args.lr, betas=train_cfg.betas, eps=train_cfg.eps)
    runs = {
        "dense_reference": (reference, plain_adam),
        "protsae_fp32": (protsae_fp32, make_optimizer(protsae_fp32, args.lr, train_cfg)),
        "protsae_bf16": (protsae_bf16, make_optimizer(protsae_bf16, args.lr, train_cfg)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for step in range(args.steps):
        x = data.sample(args.batch_size)
        for name in names[step % 3 :] + names[: step % 3]:
            model, optimizer = runs[name]
            start = time.perf_counter()
            if name == "dense_reference":
                model.step(optimizer, x, train_cfg.grad_clip_norm)
            else:
                bf16 = name == "protsae_bf16"
                training_step(model, optimizer, x, autocast=bf16, grad_clip_norm=train_cfg.grad_clip_norm)
            seconds[name].append(time.perf_counter() - start)
    timed = {name: values[args.warmup_steps :] for name, values in seconds.items()}
    tokens_per_s = {name: args.batch_size / statistics.median(values) for name, values in timed.items()}
    fvu = {
        "dense_reference": reference.heldout_fvu(heldout, args.batch_size),
        "protsae_fp32": evaluate(protsae_fp32, heldout, args.batch_size)["fvu"],
        "protsae_bf16": evaluate(protsae_bf16, heldout, args.batch_size)["fvu"],
    }
    return {
        "width": width, "k": k, "tokens": args.steps * args.batch_size,
        "tokens_per_s": tokens_per_s,
        "speedup_over_dense": {name: rate / tokens_per_s["dense_reference"] for name, rate in tokens_per_s.items()},
        "heldout_fvu": fvu,
        "step_seconds": seconds,
    }


def train_peers(args, data: PlantedActivations, heldout: torch.Tensor) -> dict:
    """protsae, sparsify and SAELens on the same batches (module docstring; benchmarks/peers.py)."""
    import peers

    versions = peers.available()
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        raise SystemExit(f"--peers needs {', '.join(missing)}: pip install -e \".[bench]\"")
    width, k, n_steps = args.peer_width, args.peer_k, args.peer_steps
    first = data.sample(args.batch_size)
    cfg = SAEConfig(d_model=args.d_model, n_latents=width, k=k, dead_tokens_threshold=10**12, normalize_input=True)
    train_cfg = TrainConfig(batch_size=args.batch_size, device="cpu")
    protsae_default = make_sae(cfg)
    protsae_default.initialize(first)
    protsae_lr = make_sae(cfg)
    protsae_lr.load_state_dict(protsae_default.state_dict())
    lr = default_lr(width)
    optimizers = {"protsae": make_optimizer(protsae_default, lr, train_cfg),
                  "protsae_lr": make_optimizer(protsae_lr, args.lr, train_cfg)}
    sparsify_run = peers.SparsifyRun(args.d_model, width, k, first)
    saelens_run = peers.SAELensRun(args.d_model, width, k, args.batch_size, n_steps)

    def protsae_step(name, sae, step, x):
        if name == "protsae":  # protsae's own schedule: linear warm-up, constant, linear decay
            for group in optimizers[name].param_groups:
                group["lr"] = lr * _lr_factor(step, n_steps, train_cfg.warmup_fraction, train_cfg.decay_fraction)
        training_step(sae, optimizers[name], x, grad_clip_norm=train_cfg.grad_clip_norm)

    steps = {
        "protsae": lambda step, x: protsae_step("protsae", protsae_default, step, x),
        "protsae_lr": lambda step, x: protsae_step("protsae_lr", protsae_lr, step, x),
        "sparsify": lambda step, x: sparsify_run.step(x),
        "saelens": lambda step, x: saelens_run.step(x),
    }
    names = list(steps)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for step in range(n_steps):
        x = data.sample(args.batch_size)
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name](step, x)
            seconds[name].append(time.perf_counter() - start)
    timed = {name: values[args.warmup_steps :] for name, values in seconds.items()}
    fvu = {
        "protsae": evaluate(protsae_default, heldout, args.batch_size)["fvu"],
        "protsae_lr": evaluate(protsae_lr, heldout, args.batch_size)["fvu"],
        "sparsify": heldout_fvu(sparsify_run.reconstruct, heldout, args.batch_size),
        "saelens": heldout_fvu(saelens_run.reconstruct, heldout, args.batch_size),
    }
    return {
        "width": width, "k": k, "d_model": args.d_model, "batch_size": args.batch_size, "steps": n_steps,
        "tokens": n_steps * args.batch_size, "versions": versions,
        "learning_rates": {"protsae": lr, "protsae_lr": args.lr, "sparsify": sparsify_run.lr,
                           "saelens": saelens_run.trainer.cfg.lr},
        "tokens_per_s": {name: args.batch_size / statistics.median(values) for name, values in timed.items()},
        "heldout_fvu": fvu,
        "step_seconds": seconds,
    }


def print_peers(row: dict) -> None:
    labels = {
        "protsae": f"protsae (lr {row['learning_rates']['protsae']:.0e}, warm-up and decay)",
        "protsae_lr": f"protsae (lr {row['learning_rates']['protsae_lr']:.0e}, constant)",
        "sparsify": f"sparsify {row['versions']['sparsify']} (SignSGD, lr {row['learning_rates']['sparsify']:.0e})",
        "saelens": f"SAELens {row['versions']['saelens']} (Adam, lr {row['learning_rates']['saelens']:.0e})",
    }
    print(f"\npeers: width {row['width']:,}, k {row['k']}, d_model {row['d_model']}, batch {row['batch_size']}, "
          f"{row['steps']} steps ({row['tokens']:,} tokens), float32, CPU")
    print(f"{'trainer':<48} {'tokens/s':>9} {'vs fastest peer':>15} {'held-out FVU':>12}")
    fastest_peer = max(row["tokens_per_s"][name] for name in row["versions"])
    for name, label in labels.items():
        rate = row["tokens_per_s"][name]
        print(f"{label:<48} {rate:>9,.0f} {rate / fastest_peer:>14.2f}x {row['heldout_fvu'][name]:>12.4f}")


def time_decoders(width: int, k: int, args) -> dict:
    """Median seconds of decode forward + backward: gathered rows against a dense product."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(width, args.d_model, generator=generator, requires_grad=True)
    idx = torch.rand(args.batch_size, width, generator=generator).topk(k).indices
    vals = torch.rand(args.batch_size, k, generator=generator, requires_grad=True)
    target = torch.randn(args.batch_size, args.d_model, generator=generator)

    def gathered():
        return F.embedding_bag(idx, weight, per_sample_weights=vals, mode="sum")

    def dense():
        return torch.zeros(args.batch_size, width).scatter(1, idx, vals) @ weight

    times: dict[str, list[float]] = {"gather": [], "dense": []}
    # Interleaved repeats after one warm-up round.
    for repeat in range(args.decode_repeats + 1):
        for name, decode in (("gather", gathered), ("dense", dense)):
            start = time.perf_counter()
            (decode() - target).pow(2).sum().backward()
            if repeat:
                times[name].append(time.perf_counter() - start)
            weight.grad = vals.grad = None
    result = {name: statistics.median(values) for name, values in times.items()}
    return {"width": width, "k": k, "seconds": result, "gather_speedup": result["dense"] / result["gather"]}


def write_cache(directory: Path, n_tokens: int, args) -> list[str]:
    """Parquet shards in the caching stage's format, 65,536 rows each."""
    data = PlantedActivations(args.d_model, 4096, 32, seed=1)
    directory.mkdir(parents=True, exist_ok=True)
    rows_per_shard, seq_len = 65536, 256
    paths = []
    for shard, start in enumerate(range(0, n_tokens, rows_per_shard)):
        n = min(rows_per_shard, n_tokens - start)
        acts = data.sample(n).numpy().astype(np.float16).reshape(-1)
        seq = np.arange(start, start + n) // seq_len
        table = pa.table({
            "seq_id": pa.array([f"S{i}" for i in seq], pa.string()),
            "pos": pa.array((np.arange(start, start + n) % seq_len).astype(np.int32)),
            "act": pa.FixedSizeListArray.from_arrays(pa.array(acts.view(np.uint16)).view(pa.float16()), args.d_model),
        }).replace_schema_metadata({b"d_model": json.dumps(args.d_model).encode()})
        path = directory / f"shard{shard:03d}.parquet"
        pq.write_table(table, path, row_group_size=16384, use_dictionary=["seq_id"], compression="none")
        paths.append(str(path))
    return paths


def memory_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident memory of this process, MiB.

    Not ``getrusage``: Linux carries ``ru_maxrss`` over an exec from the forked parent, so a
    child of a large process would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(args) -> None:
    """In a fresh process: train on ``--rss-train-tokens`` of the cache and print the peak RSS
    (MiB) as JSON."""
    torch.set_num_threads(args.threads)
    shards = sorted(str(p) for p in Path(args.rss_child).glob("*.parquet"))
    n_tokens = sum(pq.read_metadata(p).num_rows for p in shards)
    baseline = memory_mib("VmRSS")
    cfg = SAEConfig(d_model=args.d_model, n_latents=args.rss_width, k=32, normalize_input=True)
    train_cfg = TrainConfig(
        n_tokens=args.rss_train_tokens, batch_size=args.batch_size, holdout_fraction=0.01, eval_tokens=16384,
        shuffle_buffer=args.rss_shuffle_buffer, device="cpu", autocast="bf16", log_every=10**6,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = train_sae(shards, cfg, train_cfg, out, progress=False)
    print(json.dumps({
        "n_tokens": n_tokens, "cache_bytes": sum(Path(p).stat().st_size for p in shards),
        "peak_rss_mib": memory_mib("VmHWM"),
        "rss_after_imports_mib": baseline, "seconds": time.perf_counter() - start,
        "tokens_per_s": metrics["tokens_per_s"],
    }))


def measure_rss(args) -> list[dict]:
    """Peak RSS per cache size: ``--rss-repeats`` fresh processes each, interleaved."""
    results = {factor: [] for factor in (1, 4)}
    with tempfile.TemporaryDirectory() as root:
        for factor in results:
            write_cache(Path(root) / f"cache{factor}x", factor * args.rss_tokens, args)
        for _ in range(args.rss_repeats):
            for factor, runs in results.items():
                command = [
                    sys.executable, __file__, "--rss-child", str(Path(root) / f"cache{factor}x"),
                    "--threads", str(args.threads), "--d-model", str(args.d_model),
                    "--batch-size", str(args.batch_size), "--rss-width", str(args.rss_width),
                    "--rss-shuffle-buffer", str(args.rss_shuffle_buffer),
                    "--rss-train-tokens", str(4 * args.rss_tokens),
                ]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(output.strip().splitlines()[-1]))
    return [
        {
            "cache_factor": factor, "n_tokens": runs[0]["n_tokens"], "cache_bytes": runs[0]["cache_bytes"],
            "peak_rss_mib": [run["peak_rss_mib"] for run in runs],
            "median_peak_rss_mib": statistics.median(run["peak_rss_mib"] for run in runs),
            "rss_after_imports_mib": statistics.median(run["rss_after_imports_mib"] for run in runs),
            "tokens_per_s": statistics.median(run["tokens_per_s"] for run in runs),
        }
        for factor, runs in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=24, help="training steps per configuration (token budget)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--planted-atoms", type=int, default=8192)
    parser.add_argument("--planted-k", type=int, default=32)
    parser.add_argument("--heldout-tokens", type=int, default=16384)
    parser.add_argument("--decode-repeats", type=int, default=5)
    parser.add_argument("--rss-tokens", type=int, default=131072, help="tokens in the 1x cache")
    parser.add_argument("--rss-width", type=int, default=4096)
    parser.add_argument("--rss-shuffle-buffer", type=int, default=65536)
    parser.add_argument("--rss-repeats", type=int, default=2, help="fresh processes per cache size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", action="store_true", help="only protsae against sparsify and SAELens")
    parser.add_argument("--peer-width", type=int, default=16384)
    parser.add_argument("--peer-k", type=int, default=32)
    parser.add_argument("--peer-steps", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="width 4096, k 32, 8 steps, a 32k-token cache, 1 repeat")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/sae_train.json"))
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--rss-train-tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return
    if args.quick:
        args.widths, args.ks, args.steps = [4096], [32], 8
        args.rss_tokens, args.decode_repeats, args.rss_repeats = 32768, 3, 1

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = PlantedActivations(args.d_model, args.planted_atoms, args.planted_k, seed=0)
    heldout_source = PlantedActivations(args.d_model, args.planted_atoms, args.planted_k, seed=0)  # same atoms
    heldout_source.generator.manual_seed(12345)  # other tokens
    heldout = heldout_source.sample(args.heldout_tokens)
    started = time.perf_counter()
    if args.peers:
        row = train_peers(args, data, heldout)
        print_peers(row)
        report = {"settings": {k: v for k, v in vars(args).items() if k not in ("rss_child", "rss_train_tokens", "out")},
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "peers": row,
                  "seconds": time.perf_counter() - started}
        out = Path(args.out).with_name("sae_peers.json") if args.out.endswith("sae_train.json") else Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
        return
    decoding = [time_decoders(width, k, args) for width in args.widths for k in args.ks]
    training = [train_side_by_side(width, k, args, data, heldout) for width in args.widths for k in args.ks]
    rss = measure_rss(args)
    report = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("rss_child", "rss_train_tokens", "out")},
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "training": training, "decoding": decoding, "peak_rss": rss,
        "seconds": time.perf_counter() - started,
    }

    print(f"d_model {args.d_model}, batch {args.batch_size}, {args.steps} steps "
          f"({args.steps * args.batch_size:,} tokens) per configuration, {args.threads} threads, "
          f"median step after {args.warmup_steps} warm-up steps")
    print(f"{'width':>6} {'k':>4} | {'tokens/s: dense':>15} {'protsae fp32':>12} {'bf16':>8} | "
          f"{'speedup fp32':>12} {'bf16':>6} | {'FVU: dense':>10} {'fp32':>7} {'bf16':>7}")
    for row in training:
        rate, speedup, fvu = row["tokens_per_s"], row["speedup_over_dense"], row["heldout_fvu"]
        print(f"{row['width']:>6} {row['k']:>4} | {rate['dense_reference']:>15,.0f} {rate['protsae_fp32']:>12,.0f} "
              f"{rate['protsae_bf16']:>8,.0f} | {speedup['protsae_fp32']:>11.1f}x {speedup['protsae_bf16']:>5.1f}x | "
              f"{fvu['dense_reference']:>10.4f} {fvu['protsae_fp32']:>7.4f} {fvu['protsae_bf16']:>7.4f}")
    print(f"\ndecode forward+backward, batch {args.batch_size}:")
    print(f"{'width':>6} {'k':>4} | {'gather ms':>9} {'dense ms':>9} | gather speedup")
    for row in decoding:
        print(f"{row['width']:>6} {row['k']:>4} | {1e3 * row['seconds']['gather']:>9.1f} "
              f"{1e3 * row['seconds']['dense']:>9.1f} | {row['gather_speedup']:.1f}x")
    print(f"\npeak RSS of train_sae on {4 * args.rss_tokens:,} tokens of a cache (width {args.rss_width}, "
          f"shuffle buffer {args.rss_shuffle_buffer:,} tokens), {args.rss_repeats} fresh processes per size:")
    for row in rss:
        runs = ", ".join(f"{peak:,.0f}" for peak in row["peak_rss_mib"])
        print(f"  {row['cache_factor']}x: {row['n_tokens']:,} tokens, {row['cache_bytes'] / 2**20:,.0f} MiB on disk -> "
              f"peak RSS median {row['median_peak_rss_mib']:,.0f} MiB (runs: {runs}; after imports "
              f"{row['rss_after_imports_mib']:,.0f} MiB), {row['tokens_per_s']:,.0f} tokens/s")
    print(f"\ntotal {report['seconds']:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
