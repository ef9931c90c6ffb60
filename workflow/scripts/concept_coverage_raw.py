"""Snakemake script: one layer's raw-dimension concept coverage, its best pairs of every concept
dataset (one `concept_sweep_raw.py` job each) merged and counted."""

from protsae.concepts.coverage import merge_coverage
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
layer = int(snakemake.wildcards.layer)
summary = merge_coverage(dict(zip(snakemake.params.datasets, snakemake.input.pairs)), snakemake.output.pairs,
                         snakemake.output.coverage,
                         {"features": "raw", "layer": layer, "n_units": snakemake.params.n_units},
                         f1_cutoff=snakemake.params.f1_cutoff)
log.info("layer %d: %s", layer, {key: value for key, value in summary.items() if key != "by_source"})
