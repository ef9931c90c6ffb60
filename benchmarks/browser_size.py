"""The latent browser's size and build time for one SAE of 16,384 latents with 12 example proteins
in each of the 4 activation bins (the issue's bound: under 100 MB), plus 3 structure proteins.

The worst case: every latent has full bins. Each example's track (how many residues are active,
how long the protein is) is drawn from a real examples table of the demo (by default its widest
SAE, ``results/unirep256/browser_data/swissprot/layer3/topk_k32_w4096/examples.parquet``), so the
tracks are as dense as real ones; the proteins' sequences and structures are shared by all SAEs
of a site and counted apart.

    python benchmarks/browser_size.py [--latents 16384] [--per-bin 12] [--examples PARQUET]

Then, where Debian's Chromium is installed, the SAE page of that site is opened in it (as the
browser tests do) and the time to show the table, to sort it by test F1 and to search it is
measured (median of 5, each on a fresh page for the load). Prints the figures and writes them to
benchmarks/results/browser_size.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.browser.examples import BINS, HISTOGRAM_BINS, STRUCTURE_GROUP, read_table
from protsae.browser.site import site_size, write_assets, write_sae_site

DEMO = "results/unirep256/browser_data/swissprot/layer3/topk_k32_w4096/examples.parquet"


def synthetic_examples(n_latents: int, per_bin: int, n_structures: int, real: pd.DataFrame, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_active = real["positions"].map(len).to_numpy()
    lengths = real["length"].to_numpy()
    rows = []
    proteins = [f"P{i:05d}" for i in range(50_000)]
    for latent in range(n_latents):
        for group in range(len(BINS) + 1):
            count = per_bin if group < len(BINS) else n_structures
            lo, hi = BINS[group] if group < len(BINS) else (0.75, 1.0)
            for rank in range(count):
                pick = rng.integers(len(real))
                length = int(lengths[pick])
                active = min(int(n_active[pick]), length)
                positions = np.sort(rng.choice(length, size=active, replace=False)).astype(np.int32)
                norm = rng.uniform(lo, hi) if rank else hi
                values = (rng.uniform(0.05, 1.0, size=active) * norm).astype(np.float32)
                values[rng.integers(active)] = norm
                rows.append((latent, group, rank, proteins[rng.integers(len(proteins))], norm, norm, length,
                             positions, values))
    return pd.DataFrame(rows, columns=["latent", "group", "rank", "protein", "max", "norm", "length",
                                       "positions", "values"]), proteins


def page_timings(page_path: Path, repeats: int = 5) -> dict:
    """Median milliseconds, in Chromium, from navigation to the table shown, to sort it by test F1
    and to search it by a latent id."""
    from playwright.sync_api import sync_playwright

    load, sort, search = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            start = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_selector("#table .row")
            load.append(1000 * (time.perf_counter() - start))
            sort.append(page.evaluate("""() => { const t = performance.now();
                document.querySelector("button[data-key=test_f1]").click(); return performance.now() - t; }"""))
            search.append(page.evaluate("""() => { const box = document.getElementById("search"); const t = performance.now();
                box.value = "16000"; box.dispatchEvent(new Event("input")); return performance.now() - t; }"""))
            page.close()
        browser.close()
    return {"load": round(statistics.median(load)), "sort": round(statistics.median(sort)),
            "search": round(statistics.median(search))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=16_384)
    parser.add_argument("--per-bin", type=int, default=12)
    parser.add_argument("--structures", type=int, default=3)
    parser.add_argument("--examples", default=DEMO, help="a real examples table to draw track densities from")
    parser.add_argument("--out", default="benchmarks/results/browser_size.json")
    args = parser.parse_args()

    real = read_table(args.examples)
    real = real[real["group"] < STRUCTURE_GROUP]
    examples, proteins = synthetic_examples(args.latents, args.per_bin, args.structures, real)
    n = args.latents
    overview = pd.DataFrame({"latent": np.arange(n), "n_proteins": 1000, "density": 0.02, "max": 1.0,
                             "histogram": [np.full(HISTOGRAM_BINS, 50)] * n})
    family = pd.DataFrame({"latent": np.arange(n), "status": "scored", "top_protein": "P00001", "family": "IPR000001",
                           "family_name": "a family of proteins", "threshold": 0.5, "train_f1": 0.8,
                           "test_f1": 0.75, "test_precision": 0.8, "test_recall": 0.7, "test_support": 10,
                           "test_predicted": 9, "train_support": 10})
    patterns = pd.DataFrame({"latent": np.arange(n), "pattern": "motif_short"})
    gaps = pd.DataFrame(columns=["latent", "protein", "activation", "normalised", "rank", "protein_families"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "layer24/topk_k64_w16384"
        start = time.perf_counter()
        write_sae_site(out, sae={"variant": "topk", "layer": 24, "k": 64, "width": n, "dataset": "uniref50",
                                 "name": "topk_k64_w16384", "evalset": "swissprot", "f1_cutoff": 0.7},
                       prefix="../../", overview=overview, examples=examples[examples["group"] < STRUCTURE_GROUP],
                       structures=examples[examples["group"] == STRUCTURE_GROUP], family=family, patterns=patterns,
                       gaps=gaps, probes={}, steering=None, chunks={p: i // 256 for i, p in enumerate(proteins)})
        seconds = time.perf_counter() - start
        size = site_size(out)
        latent_files = sorted((out / "latents").glob("*.js"))
        per_latent = np.array([p.stat().st_size for p in latent_files])
        table_bytes = (out / "data/table.js").stat().st_size
        write_assets(Path(tmp))
        timings = page_timings(out / "index.html") if shutil.which("chromium") else None
    result = {
        "latents": n, "examples_per_bin": args.per_bin, "structures_per_latent": args.structures,
        "track_source": args.examples,
        "median_active_residues_per_example": float(np.median(real["positions"].map(len))),
        "sae_pages_bytes": size["bytes"], "sae_pages_mb": round(size["bytes"] / 1e6, 1), "files": size["files"],
        "latent_file_median_kb": round(float(np.median(per_latent)) / 1e3, 1),
        "latent_file_max_kb": round(float(per_latent.max()) / 1e3, 1),
        "table_mb": round(table_bytes / 1e6, 2),
        "build_seconds": round(seconds, 1),
        "sae_page_ms": timings,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
