"""Snakemake script: sparse latent codes of one dataset under every SAE of one encoding group
(its layer, or every layer), one shard after another, one pass per shard for all of them; over the
evaluation set, each SAE's per-protein maxima too."""

from pathlib import Path

import torch

from protsae.activations.manifest import verified_manifest
from protsae.codes.encode import CodeTarget, encode_cache_many, encode_model_many
from protsae.codes.maxima import max_activation_per_protein
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.sae.io import load_sae
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
params = snakemake.params
device_name = snakemake.config["encode"]["device"]
device = resolve_device(device_name)
saes = {target["sae"]: load_sae(target["sae"]).to(device) for target in params.targets}
log.info("%d SAEs at layers %s from the %s, %d shards", len(saes), params.layers, params.source, params.n_shards)
if params.source == "cache":
    # Every shard this job reads, checked against the checksum recorded when it was written.
    for manifest, paths in params.caches.values():
        verified_manifest(manifest, paths)
else:
    model = load_model(snakemake.config["model"] | {"device": device_name})

for shard in range(params.n_shards):
    groups = {layer: [CodeTarget(saes[t["sae"]], t["codes"][shard], t["sae"]) for t in params.targets
                      if t["layer"] == layer] for layer in params.layers}
    if params.source == "cache":
        for layer, group in groups.items():
            stats = encode_cache_many(group, params.caches[layer][1][shard], batch_rows=params.encode["batch_rows"], progress=True)
            for target, target_stats in zip(group, stats):
                log.info("shard %d, %s: %s", shard, target.sae_path, target_stats.as_dict())
    else:
        sequences = read_sequences(Path(snakemake.input.sequences) / f"shard{shard}.fasta")
        stats = encode_model_many(model, groups, sequences, max_tokens=params.max_tokens,
                                  storage_dtype=params.storage_dtype, progress=True)
        for layer, group in groups.items():
            for target, target_stats in zip(group, stats[layer]):
                log.info("shard %d, %s: %s", shard, target.sae_path, target_stats.as_dict())

# Over the evaluation set: each SAE's per-protein maxima (output.maxima, one per target in order),
# from the code shards just written.
for target, maxima_path in zip(params.targets, snakemake.output.maxima):
    maxima = max_activation_per_protein(target["codes"])
    maxima.save(maxima_path)
    log.info("%s maxima: %d proteins x %d latents, %d non-zeros (density %.4f)", target["sae"], *maxima.shape,
             len(maxima.value), len(maxima.value) / max(1, maxima.shape[0] * maxima.shape[1]))
