"""Snakemake script: every SAE's steering summary in one table."""

from protsae.files import write_tsv
from protsae.logs import setup_logging
from protsae.steering.run import read_sae_tables

log = setup_logging(snakemake.log[0])
write_tsv(read_sae_tables(snakemake.input), snakemake.output[0])
