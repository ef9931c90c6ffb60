"""Snakemake script: one row per SAE with its family-specific count and pattern-class mix."""

import json
from pathlib import Path

import pandas as pd

from protsae.figures.latents import PATTERN_CLASSES
from protsae.files import atomic_path
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = []
for family_path, patterns_path in zip(snakemake.input.family, snakemake.input.patterns):
    family = json.loads(Path(family_path).read_text())
    patterns = json.loads(Path(patterns_path).read_text())
    rows.append(family | {f"pattern_{name}": patterns["counts"].get(name, 0) for name in PATTERN_CLASSES})
table = pd.DataFrame(rows).sort_values(["layer", "variant", "k", "width"])
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("\n%s", table.to_string(index=False))
