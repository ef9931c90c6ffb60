"""Activation-caching throughput on the demo model and data.

Measures, side by side in one run (medians over repeats, variants interleaved):
  * the model forward alone over length-sorted token-budget batches,
  * the full caching path (forward + position selection + float16 + Parquet, all layers) over the
    same batches, dense and with the demo's per-sequence position subset, in the default ``act``
    layout (fixed_size_binary), and dense in the fixed_size_list layout (format 1) for comparison,
  * the forward over random-order fixed-size batches holding as many sequences on average.

The caching overhead is reported two ways: the ratio of the median times of separate runs (on a
noisy shared machine the forward's own run-to-run spread, 10-25%, swamps it), and the overhead
inside each caching run, where the forward's time is measured around the same forward calls the
writes follow (`CacheStats.forward_seconds` against the run's total), so both share one machine state.

    python benchmarks/cache_throughput.py            # demo settings
    python benchmarks/cache_throughput.py --n-sequences 200 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from protsae.activations.batches import random_batches, token_budget_batches
from protsae.activations.cache import cache_activations
from protsae.models import load_model
from protsae.sequences.fasta import read_fasta
from protsae.sequences.sampling import reservoir_sample

REPO = Path(__file__).resolve().parent.parent


def forward_only(model, sequences, batches, layers) -> float:
    start = time.perf_counter()
    for batch in batches:
        tokens = model.tokenize([sequences[i][1] for i in batch])
        model.hidden_states(tokens, layers)
    return time.perf_counter() - start


def full_cache(model, sequences, layers, max_tokens, positions, workdir, layout) -> tuple[float, float]:
    """Wall time of one caching run, and its overhead over its own forward calls."""
    start = time.perf_counter()
    stats = cache_activations(
        model, sequences, layers, {layer: Path(workdir) / f"layer{layer}.parquet" for layer in layers},
        max_tokens=max_tokens, positions_per_sequence=positions, act_layout=layout, progress=False,
    )
    seconds = time.perf_counter() - start
    return seconds, seconds / stats.forward_seconds - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--n-sequences", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/cache_throughput.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    dataset = config["datasets"][config["sae"]["train_dataset"]]
    max_tokens = config.get("activations", {}).get("max_tokens", 16384)
    positions = dataset.get("positions_per_sequence")
    layers = sorted(config["layers"])
    model = load_model(config["model"] | {"device": "cpu"})
    records = reservoir_sample(read_fasta(REPO / dataset["fasta"]), args.n_sequences, args.seed,
                               max_length=dataset.get("max_length", 1022))
    sequences = [(r.seq_id, r.sequence.replace("J", "X")) for r in records]
    lengths = [len(s) for _, s in sequences]
    sorted_batches = token_budget_batches(lengths, max_tokens)
    fixed_size = max(1, round(len(sequences) / len(sorted_batches)))
    shuffled_batches = random_batches(len(sequences), fixed_size, seed=args.seed)
    n_residues = sum(lengths)

    timings = {"forward_sorted": [], "cache_dense": [], "cache_subset": [], "cache_dense_list": [],
               "forward_random": []}
    in_run = {"cache_dense": [], "cache_subset": [], "cache_dense_list": []}
    variants = (("cache_dense", None, "fixed_size_binary"), ("cache_subset", positions, "fixed_size_binary"),
                ("cache_dense_list", None, "fixed_size_list"))
    forward_only(model, sequences, sorted_batches[:2], layers)  # warm-up
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            timings["forward_sorted"].append(forward_only(model, sequences, sorted_batches, layers))
            for name, subset, layout in variants:
                if name != "cache_subset" or positions:
                    seconds, overhead = full_cache(model, sequences, layers, max_tokens, subset, workdir, layout)
                    timings[name].append(seconds)
                    in_run[name].append(overhead)
            timings["forward_random"].append(forward_only(model, sequences, shuffled_batches, layers))
    medians = {name: statistics.median(t) for name, t in timings.items() if t}
    rate = {name: n_residues / seconds for name, seconds in medians.items()}

    def padded(batches):
        return sum(len(b) * (max(lengths[i] for i in b) + 2) for b in batches)

    report = {
        "model": model.describe(),
        "layers": layers,
        "n_sequences": len(sequences),
        "n_residues": n_residues,
        "max_tokens": max_tokens,
        "positions_per_sequence": positions,
        "sorted_batches": len(sorted_batches),
        "random_batch_size": fixed_size,
        "padding_share_sorted": 1 - n_residues / padded(sorted_batches),
        "padding_share_random": 1 - n_residues / padded(shuffled_batches),
        "threads": args.threads,
        "repeats": args.repeats,
        "seconds": timings,
        "median_residues_per_s": rate,
        "in_run_overhead": in_run,
        "cache_overhead_dense": medians["cache_dense"] / medians["forward_sorted"] - 1,
        "in_run_overhead_dense": statistics.median(in_run["cache_dense"]),
        "in_run_overhead_dense_list": statistics.median(in_run["cache_dense_list"]),
        "sorted_speedup_over_random": medians["forward_random"] / medians["forward_sorted"],
    }
    if positions:
        report["cache_overhead_subset"] = medians["cache_subset"] / medians["forward_sorted"] - 1
        report["in_run_overhead_subset"] = statistics.median(in_run["cache_subset"])

    print(f"{model.name}, layers {layers}, {len(sequences)} sequences, {n_residues:,} residues, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"{'path':<44}{'residues/s':>12}")
    labels = {
        "forward_sorted": "forward, length-sorted token budget",
        "cache_dense": "full caching path, every residue",
        "cache_subset": f"full caching path, {positions} positions/sequence",
        "cache_dense_list": "same, every residue, fixed_size_list layout",
        "forward_random": f"forward, random order, {fixed_size} per batch",
    }
    for name, value in rate.items():
        print(f"{labels[name]:<44}{value:>12,.0f}")
    print(f"caching overhead over the forward pass, ratio of medians of separate runs: "
          f"{100 * report['cache_overhead_dense']:.1f}% (dense)"
          + (f", {100 * report['cache_overhead_subset']:.1f}% (subset)" if positions else ""))
    print(f"caching overhead over the forward pass, inside each caching run (median): "
          f"{100 * report['in_run_overhead_dense']:.1f}% (dense)"
          + (f", {100 * report['in_run_overhead_subset']:.1f}% (subset)" if positions else "")
          + f"; {100 * report['in_run_overhead_dense_list']:.1f}% (dense, fixed_size_list)")
    print(f"sorted token-budget batches vs random fixed-size: {report['sorted_speedup_over_random']:.2f}x "
          f"(padding {100 * report['padding_share_sorted']:.1f}% vs {100 * report['padding_share_random']:.1f}%)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
