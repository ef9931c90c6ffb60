"""Snakemake script: one row per SAE with its family-specific count and pattern-class mix."""

import json
from pathlib import Path

import pandas as pd

from protsae.files import write_tsv
from protsae.latents.patterns import pattern_columns
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = []
for family_path, patterns_path in zip(snakemake.input.family, snakemake.input.patterns):
    family = json.loads(Path(family_path).read_text())
    patterns = json.loads(Path(patterns_path).read_text())
    rows.append(family | pattern_columns(patterns["counts"]))
table = pd.DataFrame(rows).sort_values(["layer", "variant", "k", "width"])
write_tsv(table, snakemake.output[0])
log.info("\n%s", table.to_string(index=False))
