"""Snakemake script: per protein and latent, the maximum activation over the evaluation codes."""

from protsae.codes.maxima import max_activation_per_protein
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
maxima = max_activation_per_protein(list(snakemake.input.codes))
maxima.save(snakemake.output[0])
log.info("%d proteins x %d latents, %d non-zeros (density %.4f)", *maxima.shape, len(maxima.value),
         len(maxima.value) / max(1, maxima.shape[0] * maxima.shape[1]))
