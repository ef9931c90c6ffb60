"""Snakemake script: sparse latent codes of one SAE over one shard of a dataset."""

from pathlib import Path

import torch

from protsae.activations.manifest import verified_manifest
from protsae.codes.encode import encode_cache, encode_from_model
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.sae.io import load_sae
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.encode
device_name = snakemake.config["encode"]["device"]
device = resolve_device(device_name)
sae = load_sae(Path(snakemake.input.weights).parent).to(device)
if settings["source"] == "cache":
    verified_manifest(snakemake.input.manifest, [snakemake.input.activations])
    stats = encode_cache(sae, snakemake.input.activations, snakemake.output[0],
                         batch_rows=settings["batch_rows"], progress=True)
else:
    model = load_model(snakemake.config["model"] | {"device": device_name})
    sequences = read_sequences(Path(snakemake.input.sequences) / f"shard{snakemake.wildcards.shard}.fasta")
    stats = encode_from_model(model, sae, int(snakemake.wildcards.layer), sequences, snakemake.output[0],
                              max_tokens=snakemake.params.max_tokens, progress=True)
log.info("%s", stats)
