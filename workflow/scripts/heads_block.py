"""Snakemake script: one block's attention heads read through the SAEs of its input and output
layers, on a seeded sample of evaluation proteins."""

from pathlib import Path

import torch

from protsae.files import write_tsv
from protsae.heads.block import analyse_block
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.networks.pair import sample_ids
from protsae.sae.io import load_sae
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
block = int(snakemake.wildcards.block)
device = resolve_device(snakemake.config["heads"]["device"])
model = load_model(snakemake.config["model"] | {"device": str(device)})
sae_a = load_sae(Path(snakemake.input.sae_a).parent).to(device)
sae_b = load_sae(Path(snakemake.input.sae_b).parent).to(device)
sequences = dict(read_sequences(snakemake.input.sequences))
chosen = sample_ids(sorted(sequences), settings["n_sequences"], settings["seed"])
log.info("block %d: %d proteins of %s", block, len(chosen), snakemake.input.sequences)

result = analyse_block(model, block, sae_a, sae_b, [sequences[i] for i in chosen], settings["n_sources"],
                       window=settings["window"], ov_top=settings["ov_top"], qk_top=settings["qk_top"],
                       min_share=settings["min_share"], copy_min=settings["copy_min"],
                       copy_min_cosine=settings["copy_min_cosine"], max_tokens=settings["max_tokens"], progress=True)
log.info("roles: %s", result.heads["role"].value_counts().to_dict())
write_tsv(result.heads, snakemake.output.heads)
write_tsv(result.profiles, snakemake.output.profiles)
write_tsv(result.ov, snakemake.output.ov)
write_tsv(result.qk, snakemake.output.qk)
