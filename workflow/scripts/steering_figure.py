"""Snakemake script: Fig 6 over every SAE's steered latents."""

import pandas as pd
from pandas.errors import EmptyDataError

from protsae.figures.steering import plot_steering
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
tables = []
for path in snakemake.input:
    try:
        tables.append(pd.read_csv(path, sep="\t"))
    except EmptyDataError:
        log.info("%s: no latent was steered", path)
metrics = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
plot_steering(metrics, snakemake.output[0], f"{snakemake.params.model}: steering with family-specific latents",
              snakemake.params.filter_share)
