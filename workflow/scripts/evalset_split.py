"""Snakemake script: seeded train/test split of the sampled evaluation representatives."""

from protsae.files import write_json
from protsae.latents.evalset import write_split
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
stats = write_split(snakemake.input.lengths, snakemake.input.clusters, snakemake.output.split,
                    test_fraction=snakemake.params.test_fraction, seed=snakemake.params.seed)
write_json(snakemake.output.stats, stats)
log.info("%s", stats)
