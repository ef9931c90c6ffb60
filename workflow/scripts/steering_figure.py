"""Snakemake script: Fig 6 over every SAE's steered latents."""

from protsae.figures.steering import plot_steering
from protsae.logs import setup_logging
from protsae.steering.run import read_sae_tables

log = setup_logging(snakemake.log[0])
metrics = read_sae_tables(snakemake.input)
plot_steering(metrics, snakemake.output[0], f"{snakemake.params.model}: steering with family-specific latents",
              snakemake.params.filter_share)
