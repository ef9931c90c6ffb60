"""Snakemake script: the raw residual dimensions' sweep against one concept dataset at every layer
(each sign of a dimension a unit), the model run once over the dataset's concept proteins; per
layer, the dataset's best pairs (Parquet), which `concept_coverage_raw.py` merges."""

import torch

from protsae.concepts.coverage import (
    ConceptDataset,
    dataset_pairs,
    raw_unit_names,
    read_concept_split,
    sweep_model,
    write_dataset_pairs,
)
from protsae.concepts.table import read_concepts
from protsae.logs import setup_logging
from protsae.models import load_model
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.sweep
name = snakemake.wildcards.dataset
model = load_model(snakemake.config["model"] | {"device": snakemake.config["concepts"]["device"]})
names = raw_unit_names(model.d_model)
if len(names) != snakemake.params.n_units:
    raise ValueError(f"{model.name}: d_model {model.d_model} loaded, but the workflow planned "
                     f"{snakemake.params.n_units // 2} from config key model")
dataset = ConceptDataset(name, read_concepts(snakemake.input.concepts), read_concept_split(snakemake.input.split))
sweeps = sweep_model(dataset, model, dict(read_sequences(snakemake.input.sequences)), snakemake.params.layers,
                     max_tokens=snakemake.params.max_tokens,
                     min_residues=settings["min_residues"], min_instances=settings["min_instances"],
                     thresholds=settings["thresholds"], storage_dtype=snakemake.params.storage_dtype, progress=True)
log.info("%s: %d concepts evaluated on %d proteins", name, len(next(iter(sweeps.values())).index.concepts),
         len(dataset.split))
for layer, path in zip(snakemake.params.layers, snakemake.output.pairs):
    pairs = dataset_pairs(name, sweeps[layer].scores(), names, f1_cutoff=settings["f1_cutoff"])
    write_dataset_pairs(pairs, path)
    log.info("layer %d: %d covered", layer, int(pairs["covered"].sum()) if len(pairs) else 0)
