"""Snakemake script: one linear probe (task, layer, features = raw activations or one SAE's
latents), its coefficients, the features with the largest ones and, for SAE latents, their
top-activating proteins."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from protsae.probes.features import pooled_activations, pooled_codes, residue_activations, residue_codes
from protsae.probes.interpret import coefficient_stats, latent_examples, top_coefficients
from protsae.probes.linear import fit_protein_classifier, fit_protein_regressor
from protsae.probes.residue import fit_residue_classifier
from protsae.sequences.fasta import read_sequences
from protsae.probes.tasks import read_task_labels
from protsae.files import atomic_path, write_json
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
# One thread: the residue probe's small mini-batch steps ran 2.4x slower on two busy threads.
torch.set_num_threads(1)
task, settings = snakemake.params.task, snakemake.params.probes
features = snakemake.wildcards.features
raw = features == "raw"
paths = list(snakemake.input.activations if raw else snakemake.input.codes)
labels = read_task_labels(snakemake.input.labels)
sampled = set(pd.read_csv(snakemake.input.lengths, sep="\t", dtype={"seq_id": str})["seq_id"])
dropped = len(labels) - int(labels["id"].isin(sampled).sum())
labels = labels[labels["id"].isin(sampled)].reset_index(drop=True)
log.info("%s, layer %s, %s: %d sequences (%d not in the dataset sample)", snakemake.wildcards.task,
         snakemake.wildcards.layer, features, len(labels), dropped)

if task["probe"] == "residue_classifier":
    data = residue_activations(paths, labels) if raw else residue_codes(paths, labels)
    result = fit_residue_classifier(data, weight_decays=settings["weight_decays"], epochs=settings["epochs"],
                                    seed=task["seed"])
else:
    ids = labels["id"].tolist()
    X = pooled_activations(paths, ids) if raw else pooled_codes(paths, ids)
    split = labels["split"].to_numpy()
    if task["probe"] == "protein_classifier":
        result = fit_protein_classifier(X, labels["label"].astype(str).to_numpy(), split, Cs=settings["Cs"])
    else:
        result = fit_protein_regressor(X, labels["label"].astype(float).to_numpy(), split, alphas=settings["alphas"])

top = top_coefficients(result, n=settings["n_top"])
if not raw:
    sequences = dict(read_sequences(snakemake.input.sequences))
    top = latent_examples(top, paths, labels, sequences, n_examples=settings["n_examples"])
summary = {
    "task": snakemake.wildcards.task,
    "layer": int(snakemake.wildcards.layer),
    "features": features,
    "probe": result.task,
    **{key: value for key, value in result.to_dict().items() if key != "task"},
    "coefficient_stats": coefficient_stats(result.coef),
}
with atomic_path(snakemake.output.coef) as tmp, open(tmp, "wb") as handle:
    np.save(handle, result.coef)
with atomic_path(snakemake.output.top) as tmp:
    top.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
write_json(snakemake.output.result, summary)
log.info("%s %s: test %s %.4f (%s = %g)", Path(snakemake.output.result).parent, task["probe"], result.metric,
         result.test_score, result.hparam, result.chosen)
