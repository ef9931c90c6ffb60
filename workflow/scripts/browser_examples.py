"""Snakemake script: one SAE's browser examples of one dataset: per latent its example proteins in
activation bins (the evaluation set) or its strongest structure proteins (the structure dataset),
each with its track, and per latent its density, maximum and histogram of per-protein maxima."""

import pandas as pd

from protsae.browser.examples import (
    EXAMPLE_SCHEMA,
    OVERVIEW_SCHEMA,
    choose_examples,
    choose_structures,
    latent_overview,
    with_tracks,
    write_table,
)
from protsae.browser.structures import load_backbones
from protsae.codes.maxima import max_activation_per_protein
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
lengths = pd.read_csv(snakemake.input.lengths, sep="\t", dtype={"seq_id": str}).set_index("seq_id")["length"]
maxima = max_activation_per_protein(list(params.shards))
log.info("%s: %d proteins (%d with an active latent), %d latents", snakemake.wildcards.dataset, len(lengths),
         len(maxima.protein_ids), maxima.n_latents)
parts = []
if params.bins:
    parts.append(choose_examples(maxima, params.examples_per_bin))
if params.n_structures:
    with_structure = set(load_backbones(snakemake.input.structures))
    parts.append(choose_structures(maxima, params.n_structures, with_structure))
    log.info("%d of the proteins have a structure", len(with_structure & set(maxima.protein_ids)))
chosen = pd.concat(parts, ignore_index=True)
examples = with_tracks(chosen, list(params.shards), lengths.to_dict())
log.info("%d examples of %d latents, %d active residues", len(examples), examples["latent"].nunique(),
         int(examples["positions"].map(len).sum()))
write_table(examples, EXAMPLE_SCHEMA, snakemake.output.examples)
write_table(latent_overview(maxima, len(lengths)), OVERVIEW_SCHEMA, snakemake.output.overview)
