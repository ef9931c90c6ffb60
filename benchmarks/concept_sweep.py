"""Concept-coverage sweep (`protsae.concepts.sweep`) at the scale issue 16 sets: 16,384 latents
x 500 concepts x 1,000,000 residues, k = 64 codes per residue.

Synthetic problem: proteins of 300 residues, split 50/50 valid/test. 450 interval concepts
(domains, each instance 20-120 residues; 30-400 instances per concept, Zipf-like) and 50
residue concepts (sites; 200-2,000 residues each). Codes: each residue's 64 distinct latents,
lognormal values; one latent in 50 is planted on a concept
(fires on its residues, strongly), so the sweep meets both concept-specific and diffuse latents.

Measured side by side in one run, alternating --repeats times (the 1-min load average recorded):
  * the vectorised sweep: `ConceptIndex.build`, `ConceptSweep.add` over protein-aligned batches of
    --batch-residues, and `scores()`; wall time per part (median of --repeats);
  * a per-latent loop written here: for each of --loop-latents random latents, its dense
    activation column, then for every concept and threshold numpy boolean operations over the
    residues (precision per residue, recall per instance or per residue); median time per latent
    extrapolated linearly to all latents. Its valid and test F1 must equal the sweep's.

    python benchmarks/concept_sweep.py
    python benchmarks/concept_sweep.py --n-residues 200000 --n-latents 4096 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.concepts.sweep import THRESHOLDS, ConceptIndex, ConceptSweep
from protsae.files import write_json

REPO = Path(__file__).resolve().parent.parent


def synthetic_problem(n_residues: int, n_latents: int, n_concepts: int, k: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    n_proteins = n_residues // length
    proteins = [f"P{i:07d}" for i in range(n_proteins)]
    lengths = dict.fromkeys(proteins, length)
    split = {p: ("valid" if i % 2 == 0 else "test") for i, p in enumerate(proteins)}
    n_interval = int(n_concepts * 0.9)
    rows = []
    for c in range(n_concepts):
        if c < n_interval:
            n_inst = int(np.clip(400 / (1 + c % 50), 30, 400))
            where = rng.integers(0, n_proteins, n_inst)
            size = rng.integers(20, 121, n_inst)
            start = rng.integers(0, length - size)
            rows += [(proteins[p], f"domain{c}", int(s), int(s + z), "interval") for p, s, z in zip(where, start, size)]
        else:
            n_res = int(rng.integers(200, 2001))
            where, pos = rng.integers(0, n_proteins, n_res), rng.integers(0, length, n_res)
            rows += [(proteins[p], f"site{c}", int(s), int(s) + 1, "residue") for p, s in zip(where, pos)]
    table = pd.DataFrame(rows, columns=["protein", "concept", "start", "end", "kind"]).drop_duplicates()

    n = n_proteins * length
    planted = rng.choice(n_latents, n_latents // 50, replace=False)
    pool = np.setdiff1d(np.arange(n_latents), planted)
    idx = np.empty((n, k), np.int32)
    for first in range(0, n, 65536):  # k distinct latents per residue: increasing positions in the pool
        rows_ = min(65536, n - first)
        gaps = rng.geometric(k / len(pool), size=(rows_, k))
        position = np.cumsum(gaps, axis=1) - 1
        position %= len(pool)
        position.sort(axis=1)
        clash = np.c_[np.zeros((rows_, 1), bool), position[:, 1:] == position[:, :-1]]
        while clash.any():  # rare wrap-around clashes: move them on by one
            position[clash] = (position[clash] + 1) % len(pool)
            position.sort(axis=1)
            clash = np.c_[np.zeros((rows_, 1), bool), position[:, 1:] == position[:, :-1]]
        idx[first:first + rows_] = pool[position]
    val = rng.lognormal(0.0, 0.6, size=(n, k)).astype(np.float32)
    offsets = {p: i * length for i, p in enumerate(proteins)}
    for j, latent in enumerate(planted):  # a planted latent takes its concept's residues' first slot
        concept = table[table["concept"] == f"domain{j % n_interval}"]
        for r in concept.itertuples():
            base = offsets[r.protein]
            idx[base + r.start: base + r.end, 0] = latent
            val[base + r.start: base + r.end, 0] = 8.0
    return table, lengths, split, idx, val


def run_sweep(table, lengths, split, idx, val, n_latents, batch_residues):
    times = {}
    tick = time.perf_counter()
    index = ConceptIndex.build(table, lengths, split, min_residues=1, min_instances=1)
    times["index"] = time.perf_counter() - tick
    tick = time.perf_counter()
    unit_max = np.zeros(n_latents, np.float32)
    np.maximum.at(unit_max, idx.reshape(-1), val.reshape(-1))
    sweep = ConceptSweep(index, unit_max)
    length = int(index.offsets[1])
    step = max(length, batch_residues // length * length)
    for first in range(0, index.n_residues, step):
        rows = np.arange(first, min(index.n_residues, first + step))
        sweep.add(rows, idx[rows], val[rows])
    times["add"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scores = sweep.scores()
    times["scores"] = time.perf_counter() - tick
    times["total"] = sum(times.values())
    return index, unit_max, scores, times


def loop_one_latent(latent, index, table, idx, val, unit_max, members):
    """A plain per-latent computation: dense column, then every concept and threshold."""
    column = np.zeros(index.n_residues, np.float32)
    hit = idx == latent
    column[np.nonzero(hit)[0]] = val[hit]
    a = column / unit_max[latent] if unit_max[latent] > 0 else column * 0
    split = index.residue_split
    out = np.zeros((len(index.concepts), 2, len(THRESHOLDS)))
    for c, (member, instances, interval) in enumerate(members):
        for j, t in enumerate(THRESHOLDS):
            pred = a > t
            for s in (0, 1):
                in_split = split == s
                n_pred = np.count_nonzero(pred & in_split)
                tp = np.count_nonzero(pred & member & in_split)
                precision = tp / n_pred if n_pred else 0.0
                if interval:
                    mine = instances[s]
                    recall = np.mean(np.logical_or.reduceat(pred[mine[0]], mine[1])) if len(mine[1]) else 0.0
                else:
                    recall = tp / max(1, np.count_nonzero(member & in_split))
                out[c, s, j] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    best = out[:, 0, :].argmax(axis=1)
    return out[np.arange(len(best)), 0, best], out[np.arange(len(best)), 1, best]


def loop_setup(index, table):
    """Per concept: its residue mask and its instances as (residues, starts) for reduceat."""
    offsets = dict(zip(index.proteins, index.offsets[:-1]))
    members = []
    split = index.residue_split
    for row in index.concepts.itertuples():
        rows = table[table["concept"] == row.concept]
        member = np.zeros(index.n_residues, bool)
        per_split = {0: ([], []), 1: ([], [])}
        for r in rows.itertuples():
            base = offsets[r.protein]
            member[base + r.start: base + r.end] = True
            s = int(split[base])
            residues, starts = per_split[s]
            starts.append(sum(len(x) for x in residues))
            residues.append(np.arange(base + r.start, base + r.end))
        instances = {s: (np.concatenate(res) if res else np.zeros(0, np.int64), np.array(st, np.int64))
                     for s, (res, st) in per_split.items()}
        members.append((member, instances, row.kind == "interval"))
    return members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-residues", type=int, default=1_000_000)
    parser.add_argument("--n-latents", type=int, default=16384)
    parser.add_argument("--n-concepts", type=int, default=500)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--batch-residues", type=int, default=131072)
    parser.add_argument("--loop-latents", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "concept_sweep.json"))
    args = parser.parse_args()

    tick = time.perf_counter()
    table, lengths, split, idx, val = synthetic_problem(args.n_residues, args.n_latents, args.n_concepts, args.k,
                                                        args.length, args.seed)
    print(f"problem: {idx.shape[0]:,} residues x k={args.k}, {args.n_latents:,} latents, "
          f"{table['concept'].nunique()} concepts, {len(table):,} instances ({time.perf_counter() - tick:.0f} s to make)")
    rng = np.random.default_rng(args.seed + 1)
    sweep_times, loop_times, members, checked = [], [], None, 0
    for repeat in range(args.repeats):
        index, unit_max, scores, times = run_sweep(table, lengths, split, idx, val, args.n_latents, args.batch_residues)
        sweep_times.append(times)
        if members is None:
            tick = time.perf_counter()
            members = loop_setup(index, table)
            setup_seconds = time.perf_counter() - tick
        for latent in rng.choice(args.n_latents, args.loop_latents, replace=False):
            tick = time.perf_counter()
            valid, test = loop_one_latent(int(latent), index, table, idx, val, unit_max, members)
            loop_times.append(time.perf_counter() - tick)
            if not (np.allclose(valid, scores.valid_f1[:, latent], atol=1e-5)
                    and np.allclose(test, scores.test_f1[:, latent], atol=1e-5)):
                raise SystemExit(f"the loop and the sweep disagree on latent {latent}")
            checked += 1
        print(f"repeat {repeat + 1}: sweep {times['total']:.1f} s "
              f"(index {times['index']:.1f}, add {times['add']:.1f}, scores {times['scores']:.1f}); "
              f"loop {statistics.median(loop_times[-args.loop_latents:]):.1f} s per latent")
    sweep_s = statistics.median(t["total"] for t in sweep_times)
    per_latent = statistics.median(loop_times)
    loop_total = per_latent * args.n_latents + setup_seconds
    result = {
        "problem": {"residues": int(idx.shape[0]), "latents": args.n_latents, "concepts": int(table["concept"].nunique()),
                    "instances": len(table), "k": args.k, "thresholds": len(THRESHOLDS)},
        "sweep_seconds_median": sweep_s,
        "sweep_parts_median": {part: statistics.median(t[part] for t in sweep_times) for part in sweep_times[0]},
        "loop_seconds_per_latent_median": per_latent,
        "loop_setup_seconds": setup_seconds,
        "loop_seconds_extrapolated": loop_total,
        "speedup": loop_total / sweep_s,
        "latents_checked_against_loop": checked,
        "repeats": args.repeats,
        "load_average_1min": os.getloadavg()[0],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    print(f"sweep: {sweep_s:.1f} s (median of {args.repeats}); per-latent loop: {per_latent:.2f} s x "
          f"{args.n_latents:,} latents + {setup_seconds:.1f} s set-up = {loop_total / 3600:.1f} h "
          f"extrapolated; {result['speedup']:.0f}x; {checked} latents equal")
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
