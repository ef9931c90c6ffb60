"""Snakemake script: steer every aligned family-specific latent of one SAE and its controls."""

from pathlib import Path

import pandas as pd
import torch

from protsae.codes.maxima import MaxActivations
from protsae.files import write_tsv
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.sae.io import load_sae
from protsae.spec import SAESpec
from protsae.steering.run import (
    SteeringSettings,
    steer_latents,
    steered_latents_of,
    summarise,
)

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])
settings = SteeringSettings.from_config(snakemake.config["steering"])
device = snakemake.config["steering"]["device"]
model = load_model(snakemake.config["model"] | {"device": device})
sae = load_sae(Path(snakemake.input.weights).parent).to(resolve_device(device))
maxima = MaxActivations.load(snakemake.input.maxima)
latents = steered_latents_of(snakemake.input.f1, maxima, snakemake.input.split, snakemake.params.n_top,
                             snakemake.params.top_fraction, settings.f1_min)
read = {name: pd.read_csv(getattr(snakemake.input, name), sep="\t", keep_default_na=False, na_values=[""])
        for name in ("latents", "rows", "columns")}
read["columns"]["symbol"] = read["columns"]["symbol"].fillna(" ")
metrics, sequences = steer_latents(model, sae, spec.layer, latents, read["latents"], read["rows"], read["columns"],
                                   maxima, settings)
log.info("steered %d latents and %d controls", metrics.query("kind == 'family'")["latent"].nunique() if len(metrics) else 0,
         metrics.query("kind == 'control'")["latent"].nunique() if len(metrics) else 0)
if not metrics.empty:
    metrics = metrics.assign(**spec.coordinates())[[*spec.coordinates(), *metrics.columns]]
summary = summarise(metrics, settings.filter_share)
if not summary.empty:
    summary = summary.assign(**spec.coordinates())[[*spec.coordinates(), *summary.columns]]
write_tsv(metrics, snakemake.output.metrics)
write_tsv(sequences, snakemake.output.sequences)
write_tsv(summary, snakemake.output.summary)
