"""Snakemake script: the feature-network edges between two SAEs of the network's sweep (or one
SAE's co-activation pairs), and the causal sources chosen for them."""

from pathlib import Path

import pandas as pd
import torch

from protsae.codes.maxima import MaxActivations
from protsae.files import write_tsv
from protsae.logs import setup_logging
from protsae.models import load_model, resolve_device
from protsae.networks.pair import pair_edges, sample_ids
from protsae.networks.sources import (
    choose_sources,
    family_sources,
    probe_sources,
    top_proteins,
)
from protsae.sae.io import load_sae
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
source_layer, target_layer = int(snakemake.wildcards.source), int(snakemake.wildcards.target)
device = snakemake.config["networks"]["device"]
model = load_model(snakemake.config["model"] | {"device": device})
source_sae = load_sae(Path(snakemake.input.source_sae).parent).to(resolve_device(device))
target_sae = source_sae if source_layer == target_layer else load_sae(Path(snakemake.input.target_sae).parent).to(
    resolve_device(device))
sequences = dict(read_sequences(snakemake.input.sequences))
coactivation_ids = sample_ids(sorted(sequences), settings["max_proteins"], settings["seed"])

causal = settings["causal"]
if source_layer < target_layer:
    family = family_sources(pd.read_csv(snakemake.input.family, sep="\t"), settings["f1_min"])
    probe = probe_sources([(task, pd.read_csv(path, sep="\t"))
                           for task, path in zip(snakemake.params.probe_tasks, snakemake.input.probes)])
    chosen = choose_sources(family, probe, causal["max_sources"])
    proteins = top_proteins(MaxActivations.load(snakemake.input.maxima), chosen["latent"].tolist(),
                            causal["n_sequences"])
    log.info("causal sources: %d (%d family-specific, %d probe latents available)", len(chosen), len(family),
             len(probe))
else:
    chosen, proteins = choose_sources(pd.DataFrame(columns=["latent", "why"]), pd.DataFrame(columns=["latent", "why"]),
                                      0), {}
chosen["n_proteins"] = [len(proteins.get(latent, [])) for latent in chosen["latent"]]

edges = pair_edges(model, source_sae, source_layer, target_sae, target_layer, sequences, coactivation_ids, proteins,
                   min_both=settings["min_both"], coactivation_top=settings["coactivation_top"],
                   causal_top=causal["top_targets"], max_tokens=settings["max_tokens"],
                   storage_dtype=snakemake.params.storage_dtype, progress=True)
log.info("edges by kind: %s", edges["kind"].value_counts().to_dict())
write_tsv(chosen, snakemake.output.sources)
write_tsv(edges, snakemake.output.edges)
