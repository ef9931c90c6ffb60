"""How long Snakemake takes before any job runs: a dry run of the paper's config (814 jobs; its
inputs are created empty in a scratch copy of the workflow) and a no-op rerun of the demo in the
repository, once it has run (``snakemake --cores all`` with nothing to do).

    python benchmarks/dag_speed.py [--repeats 5]

Prints the median and every run's wall time, and writes them to benchmarks/results/dag_speed.json.
The demo measurement is skipped (and says so) when the demo in this checkout is not finished
and up to date (a dry run says so first; nothing is run for real).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dag_snapshot import REPO, _workdir  # noqa: E402

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = _workdir(REPO / "config/esm2_650m.yaml", Path(scratch))
        runs = [timed(["-n", "--quiet", "--configfile", "config/esm2_650m.yaml"], work)[0] for _ in range(args.repeats)]
        results["paper_dry_run_seconds"] = {"median": statistics.median(runs), "runs": runs}
    # Only a finished demo is timed: a dry run first, so a stale one is never run for real here.
    if "Nothing to be done" in timed(["-n", "--cores", "all"], REPO)[1]:
        runs = []
        for _ in range(args.repeats):
            seconds, text = timed(["--cores", "all"], REPO)
            if "Nothing to be done" not in text:
                raise SystemExit("snakemake found jobs to run in the finished demo")
            runs.append(seconds)
        results["demo_noop_rerun_seconds"] = {"median": statistics.median(runs), "runs": runs}
    else:
        print("the demo is not run (or not up to date) in this checkout: no-op rerun not measured", file=sys.stderr)
    for name, value in results.items():
        print(f"{name}: median {value['median']:.2f} s  (runs: {', '.join(f'{r:.2f}' for r in value['runs'])})")
    out = REPO / "benchmarks/results/dag_speed.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
