"""SAE training on CPU with freed memory kept for reuse (`protsae.malloc.reuse_freed_memory`, as
the ``train_sae`` jobs run) against glibc's defaults, side by side.

Each run is a fresh subprocess (the setting is per process) of ``--steps`` training steps
(`protsae.sae.train.training_step`, TopK, d_model 256, k 32, batches of 4,096 tokens, the AuxK
loss on a third of the latents), at the demo's widths, alternating the two settings ``--repeats``
times; the table gives the median wall, user and system seconds, the median peak RSS, and
whether both settings trained the same weights, byte for byte.

    python benchmarks/malloc_reuse.py                    # ~4 minutes on one core
    python benchmarks/malloc_reuse.py --repeats 2 --steps 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIDTHS = (2048, 4096)
MODES = ("glibc default", "reuse")


def child(mode: str, width: int, steps: int) -> None:
    import torch

    from protsae.malloc import reuse_freed_memory
    from protsae.sae.config import SAEConfig, TrainConfig
    from protsae.sae.train import make_optimizer, training_step
    from protsae.sae.variants import make_sae

    if mode == "reuse" and not reuse_freed_memory():
        raise SystemExit("glibc did not take the settings")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sae = make_sae(SAEConfig(d_model=256, n_latents=width, k=32))
    optimizer = make_optimizer(sae, 1e-3, TrainConfig())
    batches = torch.randn(4, 4096, 256)
    dead = torch.zeros(width, dtype=torch.bool)
    dead[::3] = True
    start = time.perf_counter()
    for step in range(steps):
        training_step(sae, optimizer, batches[step % len(batches)], dead_mask=dead)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    weights = b"".join(p.detach().numpy().tobytes() for p in sae.parameters())
    print(json.dumps({"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                      "maxrss_mb": usage.ru_maxrss / 1024, "digest": hashlib.sha256(weights).hexdigest()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/malloc_reuse.json")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.steps)
        return
    runs = {(width, mode): [] for width in WIDTHS for mode in MODES}
    for repeat in range(args.repeats):
        for width in WIDTHS:
            for mode in (MODES if repeat % 2 == 0 else MODES[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(width), "--steps", str(args.steps)],
                                     capture_output=True, text=True, check=True, cwd=REPO)
                runs[width, mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = []
    print(f"{args.steps} steps of 4,096 tokens, 1 thread, medians of {args.repeats}")
    print(f"{'width':>6} {'setting':<14} {'wall s':>7} {'user s':>7} {'sys s':>6} {'RSS MB':>7}")
    for width in WIDTHS:
        row = {"width": width}
        for mode in MODES:
            medians = {key: statistics.median(r[key] for r in runs[width, mode])
                       for key in ("wall_s", "user_s", "sys_s", "maxrss_mb")}
            row[mode] = medians
            print(f"{width:>6} {mode:<14} {medians['wall_s']:7.2f} {medians['user_s']:7.2f} {medians['sys_s']:6.2f} "
                  f"{medians['maxrss_mb']:7.0f}")
        row["wall_ratio"] = row["reuse"]["wall_s"] / row["glibc default"]["wall_s"]
        row["same_bytes"] = len({r["digest"] for mode in MODES for r in runs[width, mode]}) == 1
        print(f"{'':>6} reuse / default wall {row['wall_ratio']:.3f}; same weights: {row['same_bytes']}")
        table.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "table": table}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
