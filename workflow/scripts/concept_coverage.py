"""Snakemake script: one SAE's concept coverage, its best pairs of every concept dataset (one
`concept_sweep.py` job each) merged and counted."""

import json
from pathlib import Path

from protsae.concepts.coverage import merge_coverage
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])
n_latents = json.loads(Path(snakemake.input.config).read_text())["n_latents"]
summary = merge_coverage(dict(zip(snakemake.params.datasets, snakemake.input.pairs)), snakemake.output.pairs,
                         snakemake.output.coverage,
                         {"features": "sae", "sae": spec.as_dict(), **spec.coordinates(), "n_units": n_latents},
                         f1_cutoff=snakemake.params.f1_cutoff)
log.info("%s", {key: value for key, value in summary.items() if key != "by_source"})
