"""Snakemake script: one SAE's concept coverage over every concept dataset, from its code shards."""

import json
from pathlib import Path

from protsae.concepts.coverage import (
    ConceptDataset,
    coverage_tables,
    read_concept_split,
    sweep_codes,
)
from protsae.concepts.table import read_concepts
from protsae.files import write_json, write_tsv
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])
settings = snakemake.params.sweep
n_latents = json.loads(Path(snakemake.input.config).read_text())["n_latents"]
scores = {}
for name, concepts, split in zip(snakemake.params.datasets, snakemake.input.concepts, snakemake.input.splits):
    dataset = ConceptDataset(name, read_concepts(concepts), read_concept_split(split))
    sweep = sweep_codes(dataset, snakemake.params.codes[name], n_latents, min_residues=settings["min_residues"],
                        min_instances=settings["min_instances"], thresholds=settings["thresholds"], progress=True)
    scores[name] = sweep.scores()
    log.info("%s: %d concepts evaluated on %d proteins", name, len(sweep.index.concepts), len(sweep.index.proteins))
pairs, summary = coverage_tables(scores, f1_cutoff=settings["f1_cutoff"])
write_tsv(pairs, snakemake.output.pairs)
write_json(snakemake.output.coverage, {"features": "sae", "sae": spec.as_dict(), **spec.coordinates(),
                                       "n_units": n_latents, **summary})
log.info("%s", {key: value for key, value in summary.items() if key != "by_source"})
