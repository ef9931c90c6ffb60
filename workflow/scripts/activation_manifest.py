"""Snakemake script: manifest (model, counts, checksums) of one (dataset, layer) cache."""

from protsae.activations.manifest import write_manifest
from protsae.activations.sizes import human_bytes
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
manifest = write_manifest(
    snakemake.input.parquet,
    snakemake.input.stats,
    layer=int(snakemake.wildcards.layer),
    out_path=snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
)
log.info("layer %d of %s: %d shards, %d tokens of %d sequences, %s",
         manifest["layer"], manifest["dataset"], manifest["n_shards"], manifest["n_tokens"],
         manifest["n_sequences"], human_bytes(manifest["bytes"]))
