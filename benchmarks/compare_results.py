"""Every result table (TSV, CSV under results/) of two finished runs, compared: byte for byte,
then, where the bytes differ, value for value over the columns both sides have. How a refactor
shows it left the numbers alone (run the same config in both trees, e.g. with
``git worktree add ../before <rev>`` and ``PYTHONPATH=../before snakemake --cores all`` there).

    python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR

Exits 1 when a table is on one side only or differs in a shared column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def tables(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in (root / "results").rglob("*") if path.suffix in (".tsv", ".csv")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    first, second = tables(args.before), tables(args.after)
    identical, equal_shared, differ = [], [], []
    for rel in sorted(first & second):
        if (args.before / rel).read_bytes() == (args.after / rel).read_bytes():
            identical.append(rel)
            continue
        sep = "\t" if rel.suffix == ".tsv" else ","
        x, y = pd.read_csv(args.before / rel, sep=sep), pd.read_csv(args.after / rel, sep=sep)
        shared = [column for column in x.columns if column in y.columns]
        one_side = sorted(set(x.columns) ^ set(y.columns))
        (equal_shared if x[shared].equals(y[shared]) else differ).append((rel, one_side))
    print(f"{len(first & second)} tables in both, {len(identical)} byte-identical")
    for rel, one_side in equal_shared:
        print(f"equal in every shared column (only on one side: {', '.join(one_side) or 'none'}): {rel}")
    for rel, one_side in differ:
        print(f"DIFFERS: {rel} (only on one side: {', '.join(one_side) or 'none'})")
    for side, rels in (("before", first - second), ("after", second - first)):
        for rel in sorted(rels):
            print(f"only {side}: {rel}")
    sys.exit(1 if differ or first != second else 0)


if __name__ == "__main__":
    main()
