"""Snakemake script: cache the configured layers of one shard as Parquet."""

from pathlib import Path

import torch

from protsae.activations.cache import cache_activations
from protsae.activations.sizes import human_bytes, projected_cache_bytes
from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.models import load_model
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.activations
layers = snakemake.params.layers
shard_fasta = Path(snakemake.input.shards) / f"shard{snakemake.wildcards.shard}.fasta"
sequences = read_sequences(shard_fasta)
# The whole model section: params leave out where it runs (device), which changes no number.
model = load_model(snakemake.config["model"])
positions = snakemake.params.positions_per_sequence
n_tokens = sum(len(seq) if positions is None else min(positions, len(seq)) for _, seq in sequences)
log.info("projected: %d tokens x d_model %d x %s = %s per layer, %s for %d layers", n_tokens, model.d_model,
         settings["storage_dtype"], human_bytes(projected_cache_bytes(1, n_tokens, model.d_model, settings["storage_dtype"])),
         human_bytes(len(layers) * projected_cache_bytes(1, n_tokens, model.d_model, settings["storage_dtype"])),
         len(layers))
log.info("model %s on %s (autocast %s): %d layers of d_model %d; caching layers %s of %d sequences from %s",
         model.name, model.device, model.autocast_dtype, model.n_layers, model.d_model, layers,
         len(sequences), shard_fasta)
stats = cache_activations(
    model,
    sequences,
    layers,
    {layer: Path(snakemake.output.shard) / f"layer{layer}.parquet" for layer in layers},
    max_tokens=settings["max_tokens"],
    storage_dtype=settings["storage_dtype"],
    act_layout=settings["layout"],
    positions_per_sequence=positions,
    seed=settings["position_seed"],
    compression=settings["compression"],
    metadata={"dataset": snakemake.wildcards.dataset, "shard": int(snakemake.wildcards.shard)},
)
summary = stats.as_dict()
log.info("cached %d residues (%d tokens per layer) of %d sequences in %.1f s: %.0f residues/s, "
         "forward %.1f s, padding %.1f%%, %s per layer",
         stats.n_residues, stats.n_tokens, stats.n_sequences, stats.total_seconds,
         summary["residues_per_second"], stats.forward_seconds, 100 * summary["padding_share"],
         human_bytes(stats.layers[layers[0]]["bytes"]))
write_json(snakemake.output.stats, summary)
