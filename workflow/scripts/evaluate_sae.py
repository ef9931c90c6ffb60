"""Snakemake script: delta CE / loss recovered of one SAE on held-out sequences."""

from pathlib import Path

import torch

from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.sae.io import load_sae
from protsae.sae.splice import heldout_sequences, splice_metrics
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
spec = SAESpec.from_wildcards(snakemake.wildcards)
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.evaluation
device = snakemake.config["sae"]["evaluation"]["device"]
model = load_model(snakemake.config["model"] | {"device": device})
sae = load_sae(Path(snakemake.input.weights).parent).to(resolve_device(device))
sequences = heldout_sequences(
    snakemake.input.sequences,
    holdout_fraction=snakemake.params.holdout["holdout_fraction"],
    seed=snakemake.params.holdout["holdout_seed"],
    n_max=settings["n_sequences"],
    max_length=model.max_residues,
)
log.info("splicing %s into %s layer %s on %d held-out sequences", Path(snakemake.input.weights).parent,
         model.name, snakemake.wildcards.layer, len(sequences))
metrics = splice_metrics(
    model,
    sae,
    spec.layer,
    sequences,
    mask_prob=settings["mask_prob"],
    seed=settings["seed"],
    max_tokens=settings["max_tokens"],
    progress=True,
)
log.info("%s", metrics)
write_json(snakemake.output[0], {"sae": spec.as_dict(), **metrics})
