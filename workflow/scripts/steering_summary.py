"""Snakemake script: every SAE's steering summary in one table."""

import pandas as pd
from pandas.errors import EmptyDataError

from protsae.files import write_tsv
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
tables = []
for path in snakemake.input:
    try:
        tables.append(pd.read_csv(path, sep="\t"))
    except EmptyDataError:
        log.info("%s: no latent was steered", path)
write_tsv(pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(), snakemake.output[0])
