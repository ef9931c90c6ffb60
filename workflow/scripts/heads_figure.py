"""Snakemake script: the head-roles figure."""

import pandas as pd

from protsae.figures.heads import heads_figure
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
heads_figure(pd.read_csv(snakemake.input.heads, sep="\t"), pd.read_csv(snakemake.input.profiles, sep="\t"),
             snakemake.output[0], snakemake.params.title, n_profiles=snakemake.params.n_profiles)
