"""Snakemake script: train one SAE of the sweep on the cached shards of its layer."""

from pathlib import Path

import torch

from protsae.activations.manifest import verified_manifest
from protsae.logs import setup_logging
from protsae.malloc import reuse_freed_memory
from protsae.sae.config import run_configs
from protsae.sae.train import train_sae

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
# Every step allocates the same large blocks: glibc keeps them for reuse (protsae.malloc).
log.info("freed memory reused (glibc): %s", reuse_freed_memory())
# Every shard checked against the checksum recorded when it was written, before training starts.
manifest = verified_manifest(snakemake.input.manifest)
wc = snakemake.wildcards
# The whole section: params.training, the rerun trigger, leaves out the keys that say how the job
# runs (device, checkpoints) but not what it trains; run_configs skips the resource keys.
sae_config, train_config = run_configs(
    snakemake.config["sae"]["training"],
    snakemake.params.variant_options,
    d_model=manifest["d_model"],
    n_latents=int(wc.width),
    k=int(wc.k),
    variant=wc.variant,
)
metrics = train_sae(
    [shard["path"] for shard in manifest["shards"]],
    sae_config,
    train_config,
    out_dir=Path(snakemake.output.weights).parent,
    title=f"{manifest['model']['name']} layer {wc.layer}: {wc.variant}, k={wc.k}, width={wc.width}",
    shard_checksums=[shard["sha256"] for shard in manifest["shards"]],
)
log.info("metrics: %s", metrics)
