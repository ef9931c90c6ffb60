"""Snakemake script: one layer's raw-dimension concept coverage, its best pairs of every concept
dataset (one `concept_sweep_raw.py` job each) merged and counted."""

from protsae.concepts.coverage import coverage_summary, read_dataset_pairs
from protsae.files import write_json, write_tsv
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
layer = int(snakemake.wildcards.layer)
pairs_by_dataset = {name: read_dataset_pairs(path) for name, path in zip(snakemake.params.datasets, snakemake.input.pairs)}
pairs, summary = coverage_summary(pairs_by_dataset, f1_cutoff=snakemake.params.f1_cutoff)
write_tsv(pairs, snakemake.output.pairs)
write_json(snakemake.output.coverage, {"features": "raw", "layer": layer, "n_units": snakemake.params.n_units, **summary})
log.info("layer %d: %s", layer, {key: value for key, value in summary.items() if key != "by_source"})
