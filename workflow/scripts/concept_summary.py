"""Snakemake script: one table of the concept coverage of every SAE and of the raw dimensions of
every layer (each row named by what its coverage file carries)."""

import json
from pathlib import Path

import pandas as pd

from protsae.concepts.coverage import coverage_row
from protsae.files import write_tsv
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = [coverage_row(json.loads(Path(path).read_text())) for path in [*snakemake.input.sae, *snakemake.input.raw]]
table = pd.DataFrame(rows).sort_values(["features", "layer", "variant", "k", "width"], na_position="first")
write_tsv(table, snakemake.output[0])
log.info("\n%s", table.to_string(index=False))
