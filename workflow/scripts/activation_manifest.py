"""Snakemake script: the manifest (model, counts, checksums) of every layer of one dataset's cache,
from the stats files of its caching jobs."""

from protsae.activations.manifest import write_manifest
from protsae.activations.sizes import human_bytes
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
for layer, out_path in zip(snakemake.params.layers, snakemake.output):
    manifest = write_manifest(snakemake.input.stats, layer=layer, out_path=out_path, dataset=snakemake.wildcards.dataset)
    log.info("layer %d of %s: %d shards, %d tokens of %d sequences, %s",
             manifest["layer"], manifest["dataset"], manifest["n_shards"], manifest["n_tokens"],
             manifest["n_sequences"], human_bytes(manifest["bytes"]))
