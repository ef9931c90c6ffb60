"""Snakemake script: the figure of one SAE sweep (metrics against layer, k or width)."""

import pandas as pd

from protsae.figures.sae import plot_sae_sweep
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
table = pd.read_csv(snakemake.input[0], sep="\t")
plot_sae_sweep(table, snakemake.params.sweep, snakemake.output[0], snakemake.params.title)
log.info("wrote %s", snakemake.output[0])
