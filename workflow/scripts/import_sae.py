"""Snakemake script: convert one published SAE (an entry of sae.published) into a protsae SAE in
the SAE folder, with its held-out metrics on the training dataset's cache at its layer."""

from pathlib import Path

import torch

from protsae.activations.manifest import verified_manifest
from protsae.logs import setup_logging
from protsae.sae.published import import_published

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
manifest = verified_manifest(snakemake.input.manifest)
entry = snakemake.params.entry
# Where the entry sits in the config, for errors (not a param: reordering entries reruns nothing).
index = [item["name"] for item in snakemake.config["sae"]["published"]].index(entry["name"])
metrics = import_published(
    entry,
    f"sae.published[{index}]",
    d_model=manifest["d_model"],
    shard_paths=[shard["path"] for shard in manifest["shards"]],
    holdout_fraction=snakemake.params.holdout["holdout_fraction"],
    holdout_seed=snakemake.params.holdout["holdout_seed"],
    eval_tokens=snakemake.params.holdout["eval_tokens"],
    out_dir=Path(snakemake.output.weights).parent,
)
log.info("imported %s (%s) from %s: %s", entry["name"], entry["layout"], entry["path"], metrics)
