"""Snakemake script: one SAE's latents swept against one concept dataset, from its code shards;
the dataset's best pairs (Parquet), which `concept_coverage.py` merges over the datasets."""

import json
from pathlib import Path

from protsae.concepts.coverage import (
    ConceptDataset,
    dataset_pairs,
    read_concept_split,
    sweep_codes,
    write_dataset_pairs,
)
from protsae.concepts.table import read_concepts
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
settings = snakemake.params.sweep
name = snakemake.wildcards.dataset
n_latents = json.loads(Path(snakemake.input.config).read_text())["n_latents"]
dataset = ConceptDataset(name, read_concepts(snakemake.input.concepts), read_concept_split(snakemake.input.split))
sweep = sweep_codes(dataset, snakemake.params.codes, n_latents, min_residues=settings["min_residues"],
                    min_instances=settings["min_instances"], thresholds=settings["thresholds"], progress=True)
pairs = dataset_pairs(name, sweep.scores(), f1_cutoff=settings["f1_cutoff"])
write_dataset_pairs(pairs, snakemake.output[0])
log.info("%s: %d concepts evaluated on %d proteins, %d covered", name, len(sweep.index.concepts),
         len(sweep.index.proteins), int(pairs["covered"].sum()) if len(pairs) else 0)
