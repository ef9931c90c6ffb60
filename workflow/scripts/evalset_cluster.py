"""Snakemake script: cluster the evaluation proteins with mmseqs and keep one per cluster."""

from protsae.files import write_json
from protsae.latents.evalset import ClusterParams, cluster_representatives
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
settings = snakemake.params.evalset
stats = cluster_representatives(
    snakemake.input.sequences,
    snakemake.output.fasta,
    snakemake.output.clusters,
    max_length=settings["max_length"],
    min_length=settings["min_length"],
    params=ClusterParams(**settings["cluster"]),
    threads=snakemake.threads,
)
write_json(snakemake.output.stats, stats)
log.info("%s", stats)
