"""Snakemake script: train one SAE of the sweep on the cached shards of its layer."""

import json
from pathlib import Path

import torch

from protsae.sae.config import SAEConfig
from protsae.sae.train import TrainConfig, train_sae
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
manifest = json.loads(Path(snakemake.input.manifest).read_text())
training = snakemake.params.training
options = snakemake.params.variant_options
wc = snakemake.wildcards
# sae.variants.<variant> config keys -> SAEConfig fields.
variant_fields = {
    "batchtopk": lambda: dict(threshold_decay=options["threshold_decay"], k_store=options["k_store"]),
    "matryoshka": lambda: dict(matryoshka_prefixes=tuple(options["prefixes"]),
                               matryoshka_selection=options["selection"]),
    "relu_l1": lambda: dict(l1_coef=options["l1_coef"]),
}.get(wc.variant, dict)()
sae_config = SAEConfig(
    d_model=manifest["d_model"],
    n_latents=int(wc.width),
    k=int(wc.k),
    variant=wc.variant,
    k_aux=training["k_aux"],
    dead_tokens_threshold=training["dead_tokens_threshold"],
    auxk_coef=training["auxk_coef"],
    normalize_input=training["normalize_input"],
    seed=training["seed"],
    **variant_fields,
)
train_config = TrainConfig(
    n_tokens=training["n_tokens"],
    batch_size=training["batch_size"],
    lr=training["lr"],
    holdout_fraction=training["holdout_fraction"],
    holdout_seed=training["holdout_seed"],
    eval_tokens=training["eval_tokens"],
    shuffle_buffer=training["shuffle_buffer"],
    seed=training["seed"],
    device=training["device"],
    autocast=training["autocast"],
    checkpoint_every=training["checkpoint_every"],
    checkpoint_minutes=training["checkpoint_minutes"],
)
metrics = train_sae(
    [shard["path"] for shard in manifest["shards"]],
    sae_config,
    train_config,
    out_dir=Path(snakemake.output.weights).parent,
    title=f"{manifest['model']['name']} layer {wc.layer}: {wc.variant}, k={wc.k}, width={wc.width}",
)
log.info("metrics: %s", metrics)
