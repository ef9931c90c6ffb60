"""Snakemake script: every analysed block's head tables in one, and the summary of roles and of
the agreement between the feature circuits and the heads' behaviour."""

import pandas as pd

from protsae.files import write_json, write_tsv
from protsae.heads.summary import heads_summary
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
tables = {name: pd.concat([pd.read_csv(path, sep="\t") for path in snakemake.input[name]], ignore_index=True)
          for name in ("heads.tsv", "profiles.tsv", "ov.tsv.gz", "qk.tsv.gz")}
for name, table in tables.items():
    write_tsv(table, snakemake.output[name.split(".")[0]])
summary = heads_summary(tables["heads.tsv"], snakemake.params.window)
log.info("roles: %s; agreement: %s", summary["roles"], summary["agreement"])
write_json(snakemake.output.summary, summary)
