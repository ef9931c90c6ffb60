"""Snakemake script: the concept coverage figure (per layer, SAE latents vs raw dimensions; across
k; across width), from the coverage files of the SAEs of each panel's sweep and of the raw layers."""

import json
from pathlib import Path

import pandas as pd

from protsae.concepts.coverage import coverage_row
from protsae.figures.concepts import plot_concept_coverage
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])


def rows(key):
    return pd.DataFrame([coverage_row(json.loads(Path(path).read_text())) for path in snakemake.input.get(key, [])])


panels = [(axis, rows(f"sae_{axis}")) for axis, _ in snakemake.params.panels]
plot_concept_coverage(panels, rows("raw"), snakemake.output[0], snakemake.params.title,
                      f1_cutoff=snakemake.config["concepts"]["f1_cutoff"])
log.info("wrote %s (panels %s)", snakemake.output[0], snakemake.params.panels)
