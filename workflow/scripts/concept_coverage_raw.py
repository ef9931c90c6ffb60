"""Snakemake script: the raw residual dimensions' concept coverage at every layer (each sign of a
dimension a unit), the model run once over each dataset's concept proteins."""

import torch

from protsae.concepts.coverage import (
    ConceptDataset,
    coverage_tables,
    raw_unit_names,
    read_concept_split,
    sweep_model,
)
from protsae.concepts.table import read_concepts
from protsae.files import write_json, write_tsv
from protsae.logs import setup_logging
from protsae.models import load_model
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.sweep
layers = snakemake.params.layers
model = load_model(snakemake.config["model"] | {"device": snakemake.config["concepts"]["device"]})
scores = {layer: {} for layer in layers}
for name, concepts, split, fasta in zip(snakemake.params.datasets, snakemake.input.concepts, snakemake.input.splits,
                                        snakemake.input.sequences):
    dataset = ConceptDataset(name, read_concepts(concepts), read_concept_split(split))
    sweeps = sweep_model(dataset, model, dict(read_sequences(fasta)), layers,
                         max_tokens=snakemake.params.max_tokens,
                         min_residues=settings["min_residues"], min_instances=settings["min_instances"],
                         thresholds=settings["thresholds"], storage_dtype=snakemake.params.storage_dtype, progress=True)
    for layer, sweep in sweeps.items():
        scores[layer][name] = sweep.scores()
    log.info("%s: %d concepts evaluated on %d proteins", name, len(next(iter(sweeps.values())).index.concepts),
             len(dataset.split))
names = raw_unit_names(model.d_model)
for layer, pairs_path, coverage_path in zip(layers, snakemake.output.pairs, snakemake.output.coverage):
    pairs, summary = coverage_tables(scores[layer], names, f1_cutoff=settings["f1_cutoff"])
    write_tsv(pairs, pairs_path)
    write_json(coverage_path, {"features": "raw", "layer": layer, "n_units": len(names), **summary})
    log.info("layer %d: %s", layer, {key: value for key, value in summary.items() if key != "by_source"})
