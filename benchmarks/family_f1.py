"""Family-specificity sweep (`protsae.latents.specificity.family_f1_sweep`) at the paper's scale.

Synthetic per-protein maxima for 16,384 latents x 100,000 proteins with realistic sparsity. A
TopK SAE with k = 32 gives a ~300-residue protein ~9,600 (residue, latent) activations, but the
same latents fire on many residues of a protein (neighbouring residues, domain-wide and generic
latents), so a protein's maxima cover a few hundred distinct latents: the default density 1.5%
is ~250 latents per protein, ~25M non-zeros. Latent frequencies are heavy-tailed,
p_j = min(0.95, a / (j + 1)) with a set so the mean is the density: a few latents fire on most
proteins, most on a few hundred. Values are lognormal with a per-latent scale. ~1,000 families
have Zipf-like sizes (weight 1 / rank); 60% of proteins carry a family and 15% of those a second
one. One latent in ten is planted to follow a family (fires on 90% of its members, an order of
magnitude above the background), so the sweep meets both family-specific and diffuse latents.
The split is 50/50 at random.

Measured side by side in one run, all of them alternating --repeats times so that they see the
same load on a shared machine (the 1-min load average is recorded):
  * `family_f1_sweep` on the full problem (9 thresholds), on one thread and on --threads threads
    (default 2, the cores of the project's machines): wall time (median of --repeats), the
    peak of Python-traced allocations (tracemalloc, numpy's included; a separate one-thread
    run, as tracing slows it) and the peak resident memory above the level before the call
    (Linux: the peak is reset through /proc/self/clear_refs before the call; elsewhere the
    ru_maxrss delta, which reads 0 when an earlier peak was higher);
  * a straightforward per-latent loop (the latent's column from a CSC matrix, its train maximum,
    then numpy boolean operations over the train and test protein arrays for every candidate
    family and threshold) on --loop-latents random latents (median of --repeats), extrapolated
    linearly to all latents, plus its one-off set-up (the CSC matrix and the label look-ups); its
    rows must equal the sweep's rows for those latents.

    python benchmarks/family_f1.py                      # 16,384 latents x 100,000 proteins
    python benchmarks/family_f1.py --n-proteins 20000 --n-latents 4096 --loop-latents 100
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csc_array

from protsae.codes.maxima import MaxActivations
from protsae.files import write_json
from protsae.latents.specificity import (
    DEFAULT_THRESHOLDS,
    SWEEP_COLUMNS,
    family_f1_sweep,
    summarise_family_f1,
)

REPO = Path(__file__).resolve().parent.parent


def synthetic_problem(n_proteins: int, n_latents: int, density: float, n_families: int, seed: int
                      ) -> tuple[MaxActivations, pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    # Heavy-tailed latent frequencies with mean `density`: bisect the scale a of a / (j + 1).
    inverse_rank = 1.0 / np.arange(1, n_latents + 1)
    low, high = 0.0, density * n_latents
    for _ in range(60):
        scale = (low + high) / 2
        low, high = (scale, high) if np.minimum(0.95, scale * inverse_rank).mean() < density else (low, scale)
    frequency = rng.permutation(np.minimum(0.95, scale * inverse_rank))
    counts = rng.binomial(n_proteins, frequency)
    protein = np.concatenate([rng.choice(n_proteins, c, replace=False) for c in counts])
    latent = np.repeat(np.arange(n_latents), counts)
    latent_scale = rng.normal(0.0, 0.5, n_latents)
    value = np.exp(latent_scale[latent] + 0.75 * rng.standard_normal(latent.size))

    # Families: Zipf-like sizes; 60% of proteins labelled, 15% of those with a second family.
    weight = 1.0 / np.arange(1, n_families + 1)
    weight /= weight.sum()
    labelled = np.flatnonzero(rng.random(n_proteins) < 0.6)
    second = labelled[rng.random(labelled.size) < 0.15]
    label_protein = np.r_[labelled, second]
    label_family = rng.choice(n_families, label_protein.size, p=weight)
    labels = pd.DataFrame({"protein": label_protein, "family": label_family}).drop_duplicates()

    # Planted latents: each follows one family of 20 to 2,000 members.
    members = labels.groupby("family")["protein"].apply(np.asarray)
    sizes = members.map(len)
    eligible = sizes.index[(sizes >= 20) & (sizes <= 2000)].to_numpy()
    planted = rng.choice(n_latents, n_latents // 10, replace=False)
    planted_protein, planted_latent = [], []
    for j, family in zip(planted, rng.choice(eligible, planted.size)):
        chosen = members[family][rng.random(sizes[family]) < 0.9]
        planted_protein.append(chosen)
        planted_latent.append(np.full(chosen.size, j))
    planted_protein, planted_latent = np.concatenate(planted_protein), np.concatenate(planted_latent)
    planted_value = np.exp(latent_scale[planted_latent] + 2.5 + 0.3 * rng.standard_normal(planted_latent.size))

    keys = np.r_[protein.astype(np.int64) * n_latents + latent,
                 planted_protein.astype(np.int64) * n_latents + planted_latent]
    values = np.r_[value, planted_value].astype(np.float32)
    order = np.lexsort((-values, keys))  # by key, the largest value first
    keys, values = keys[order], values[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    keys, values = keys[first], values[first]
    fired = np.unique(keys // n_latents)
    row = np.full(n_proteins, -1, dtype=np.int64)
    row[fired] = np.arange(fired.size)
    ids = np.array([f"P{i:07d}" for i in range(n_proteins)], dtype=object)
    maxima = MaxActivations(
        protein_ids=ids[fired].tolist(),
        protein=row[keys // n_latents],
        latent=(keys % n_latents).astype(np.int32),
        value=values,
        n_latents=n_latents,
    )
    split = pd.Series(np.where(rng.random(n_proteins) < 0.5, "train", "test"), index=ids)
    accession = np.array([f"IPR{f:06d}" for f in range(n_families)], dtype=object)
    label_frame = pd.DataFrame({
        "protein": ids[labels["protein"].to_numpy()],
        "accession": accession[labels["family"].to_numpy()],
        "name": [f"family {f}" for f in labels["family"]],
        "type": "Family",
    })
    return maxima, split, label_frame


def loop_setup(maxima: MaxActivations, split: pd.Series, labels: pd.DataFrame) -> dict:
    """What the per-latent loop looks up: the CSC matrix, the split and the families as rows."""
    in_maxima = set(maxima.protein_ids)
    ids = np.array(maxima.protein_ids + [p for p in split.index if p not in in_maxima], dtype=object)
    is_train = split.reindex(ids).to_numpy() == "train"
    position = pd.Index(ids).get_indexer(labels["protein"])
    labels = labels[position >= 0].assign(row=position[position >= 0]).drop_duplicates(["row", "accession"])
    families_of: dict[int, list[str]] = {}
    rows_of: dict[str, list[int]] = {}
    for row, accession in zip(labels["row"].tolist(), labels["accession"].tolist()):
        families_of.setdefault(row, []).append(accession)
        rows_of.setdefault(accession, []).append(row)
    return {
        "ids": ids,
        "csc": csc_array((maxima.value, (maxima.protein, maxima.latent)), shape=maxima.shape),
        "train": np.flatnonzero(is_train),
        "test": np.flatnonzero(~is_train),
        "families_of": {row: sorted(families) for row, families in families_of.items()},
        "rows_of": {accession: np.array(rows) for accession, rows in rows_of.items()},
        "names": labels.drop_duplicates("accession").set_index("accession")["name"].to_dict(),
    }


def per_latent_loop(setup: dict, latents: np.ndarray, thresholds: np.ndarray = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """The method one latent at a time, as one would first write it."""
    ids, csc, train, test = setup["ids"], setup["csc"], setup["train"], setup["test"]
    families_of, rows_of, names = setup["families_of"], setup["rows_of"], setup["names"]
    rows = []
    for j in latents:
        start, end = csc.indptr[j], csc.indptr[j + 1]
        column = np.zeros(len(ids))
        column[csc.indices[start:end]] = csc.data[start:end]
        row = {"latent": j, "status": "never_fires_on_train", "top_protein": None, "norm_max": np.nan}
        train_column = column[train]
        if train_column.max() <= 0:
            rows.append(row)
            continue
        norm_max = train_column.max()
        top = min((ids[i], i) for i in train[train_column == norm_max])[1]
        row.update(top_protein=ids[top], norm_max=norm_max)
        if top not in families_of:
            row["status"] = "top_protein_unlabelled"
            rows.append(row)
            continue
        ratio = column / norm_max
        members = {}
        for family in families_of[top]:
            members[family] = np.zeros(len(ids), dtype=bool)
            members[family][rows_of[family]] = True
        train_members = {family: member[train] for family, member in members.items()}
        train_ratio = ratio[train]
        best = None
        for t in thresholds:
            predicted = train_ratio >= t
            n_predicted = int(predicted.sum())
            for family, in_family in train_members.items():
                tp = int((predicted & in_family).sum())
                f1 = 2 * tp / (n_predicted + int(in_family.sum())) if tp else 0.0
                if best is None or f1 > best[0]:
                    best = (f1, t, family)
        f1, t, family = best
        member = members[family]
        predicted, in_family = ratio[test] >= t, member[test]
        tp, n_predicted, support = int((predicted & in_family).sum()), int(predicted.sum()), int(in_family.sum())
        row.update(
            status="scored", family=family, family_name=names[family], threshold=t, train_f1=f1,
            test_f1=2 * tp / (n_predicted + support) if tp else 0.0,
            test_precision=tp / n_predicted if n_predicted else 0.0,
            test_recall=tp / support if support else 0.0,
            test_support=support, test_predicted=n_predicted, train_support=int(member[train].sum()),
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def timed_sweep(maxima: MaxActivations, split: pd.Series, labels: pd.DataFrame, threads: int
                ) -> tuple[pd.DataFrame, float, float, str]:
    """The sweep's table, wall seconds and peak resident memory above the level before it (MiB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
        method, before = "VmHWM after clear_refs", _status_kib("VmRSS")
    except OSError:
        method, before = "ru_maxrss delta", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    table = family_f1_sweep(maxima, split, labels, threads=threads)
    seconds = time.perf_counter() - start
    after = _status_kib("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return table, seconds, (after - before) / 1024, method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-proteins", type=int, default=100_000)
    parser.add_argument("--n-latents", type=int, default=16_384)
    parser.add_argument("--density", type=float, default=0.015, help="share of (protein, latent) pairs active")
    parser.add_argument("--n-families", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-latents", type=int, default=500, help="latents the per-latent loop is timed on")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of the second timing of the sweep")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/family_f1.json"))
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    start = time.perf_counter()
    maxima, split, labels = synthetic_problem(args.n_proteins, args.n_latents, args.density, args.n_families, args.seed)
    generation_seconds = time.perf_counter() - start
    nnz = maxima.value.size
    print(f"{args.n_proteins:,} proteins x {args.n_latents:,} latents, {nnz:,} non-zeros "
          f"({100 * nnz / args.n_proteins / args.n_latents:.2f}%, {nnz / args.n_proteins:.0f} latents per protein), "
          f"{labels['accession'].nunique():,} families, {len(labels):,} labels; generated in {generation_seconds:.1f} s")

    rng = np.random.default_rng(args.seed + 1)
    subset = np.sort(rng.choice(args.n_latents, min(args.loop_latents, args.n_latents), replace=False))
    start = time.perf_counter()
    setup = loop_setup(maxima, split, labels)
    setup_seconds = time.perf_counter() - start
    # Sweeps and loop alternate, so that they see the same load on a shared machine.
    seconds, threaded_seconds, rss_peaks, loop_seconds = [], [], [], []
    for _ in range(args.repeats):
        table, sweep_seconds, rss_mib, rss_method = timed_sweep(maxima, split, labels, threads=1)
        seconds.append(sweep_seconds)
        rss_peaks.append(rss_mib)
        threaded_table, sweep_seconds, rss_mib, _ = timed_sweep(maxima, split, labels, threads=args.threads)
        pd.testing.assert_frame_equal(threaded_table, table)
        threaded_seconds.append(sweep_seconds)
        rss_peaks.append(rss_mib)
        start = time.perf_counter()
        loop_table = per_latent_loop(setup, subset)
        loop_seconds.append(time.perf_counter() - start)
    tracemalloc.start()
    family_f1_sweep(maxima, split, labels)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    input_mib = sum(a.nbytes for a in (maxima.protein, maxima.latent, maxima.value)) / 2**20

    expected = table.iloc[subset].reset_index(drop=True)
    for name in ("test_support", "test_predicted", "train_support"):
        loop_table[name] = loop_table[name].astype("Int64")
    for name in ("status", "top_protein", "family", "family_name"):
        loop_table[name] = loop_table[name].astype("str")
    pd.testing.assert_frame_equal(expected, loop_table)
    loop_median = statistics.median(loop_seconds)
    loop_extrapolated = setup_seconds + loop_median * args.n_latents / subset.size

    summary = summarise_family_f1(table)
    sweep_median, threaded_median = statistics.median(seconds), statistics.median(threaded_seconds)
    report = {
        "n_proteins": args.n_proteins,
        "n_latents": args.n_latents,
        "density": args.density,
        "nnz": int(nnz),
        "n_families": int(labels["accession"].nunique()),
        "n_labels": len(labels),
        "thresholds": DEFAULT_THRESHOLDS.tolist(),
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
        "machine": platform.processor() or platform.machine(),
        "sweep_seconds": seconds,
        "sweep_seconds_median": sweep_median,
        "threads": args.threads,
        "sweep_threaded_seconds": threaded_seconds,
        "sweep_threaded_seconds_median": threaded_median,
        "sweep_peak_rss_mib": max(rss_peaks),
        "rss_method": rss_method,
        "sweep_peak_traced_mib": traced_peak,
        "input_mib": input_mib,
        "loop_latents": int(subset.size),
        "loop_setup_seconds": setup_seconds,
        "loop_seconds": loop_seconds,
        "loop_seconds_median": loop_median,
        "loop_ms_per_latent": 1000 * loop_median / subset.size,
        "loop_seconds_extrapolated": loop_extrapolated,
        "loop_matches_sweep": True,
        "speedup": loop_extrapolated / sweep_median,
        "speedup_threaded": loop_extrapolated / threaded_median,
        "summary": summary,
    }
    print(f"family_f1_sweep, 9 thresholds, 1 thread: {sweep_median:.3f} s (median of {args.repeats}: "
          + ", ".join(f"{s:.3f}" for s in seconds) + ")")
    print(f"family_f1_sweep, 9 thresholds, {args.threads} threads: {threaded_median:.3f} s (median of {args.repeats}: "
          + ", ".join(f"{s:.3f}" for s in threaded_seconds) + "); same table")
    print(f"  peak memory above the level before the call: {max(rss_peaks):.0f} MiB resident ({rss_method}), "
          f"{traced_peak:.0f} MiB traced (tracemalloc); the maxima themselves take {input_mib:.0f} MiB")
    print(f"per-latent loop: set-up {setup_seconds:.2f} s, then {loop_median:.2f} s on {subset.size} random latents "
          f"(median of {args.repeats}, {1000 * loop_median / subset.size:.2f} ms per latent); its rows equal the sweep's")
    print(f"  extrapolated linearly to {args.n_latents:,} latents (set-up + loop): {loop_extrapolated:.1f} s")
    print(f"speed-up of the sweep over the loop: {report['speedup']:.0f}x on 1 thread, "
          f"{report['speedup_threaded']:.0f}x on {args.threads} (targets: sweep < 60 s, speed-up >= 50x); "
          f"1-min load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"on {os.cpu_count()} CPUs")
    print(f"latents: {summary['n_scored']:,} scored, {summary['n_never_fires_on_train']:,} never fire on train, "
          f"{summary['n_top_protein_unlabelled']:,} top protein unlabelled; {summary['n_family_specific']:,} "
          f"family-specific (test F1 > 0.7) covering {summary['n_families_covered']:,} families; "
          f"median test F1 {summary['median_test_f1']:.3f}")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
