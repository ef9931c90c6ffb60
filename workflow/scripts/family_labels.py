"""Snakemake script: InterPro family labels of the evaluation representatives, from the
configured sources in priority order."""

from protsae.files import write_json
from protsae.latents.families import label_proteins, write_labels
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
settings = snakemake.params.families
labels, stats = label_proteins(
    settings["sources"], snakemake.input.entries, snakemake.input.representatives,
    pfam2interpro_path=settings["pfam2interpro"], threads=snakemake.threads,
)
write_labels(labels, snakemake.output.labels)
write_json(snakemake.output.stats, stats)
log.info("%s", stats)
