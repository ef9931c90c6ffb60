"""Snakemake script: the feature-network figure (the strongest causal edges of the sweep)."""

import pandas as pd

from protsae.figures.networks import network_figure
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
network_figure(pd.read_csv(snakemake.input.edges, sep="\t"), pd.read_csv(snakemake.input.nodes, sep="\t",
                                                                       keep_default_na=False, na_values={"test_f1": [""]}),
               snakemake.output[0], snakemake.params.title, n_edges=snakemake.params.n_edges)
