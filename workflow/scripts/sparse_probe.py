"""Snakemake script: sparse probes (top-k features by mean difference, logistic regression) of
one (task, layer, features): a protein-classifier probe task one class against the rest, or the
evaluation set's largest families one against the rest, on mean-pooled raw activations or one
SAE's mean-pooled latents."""

from protsae.activations.manifest import verified_manifest
from protsae.bootstrap import BootstrapSettings
from protsae.files import write_json, write_tsv
from protsae.latents.evalset import read_split
from protsae.logs import setup_logging
from protsae.probes.features import pooled_activations, pooled_codes
from protsae.probes.fit import sampled_labels
from protsae.probes.sparse import family_problem, run_sparse_probe, task_problem

log = setup_logging(snakemake.log[0])
wildcards = snakemake.wildcards
settings = snakemake.params.sparse
raw = wildcards.features == "raw"
shards = list(snakemake.params.shards)
if raw:
    verified_manifest(snakemake.input.manifest, shards)
if snakemake.params.families:
    split = read_split(snakemake.input.split)["split"]
    problem = family_problem(snakemake.input.labels, split, snakemake.params.types, settings["n_families"],
                             settings["min_positives"])
else:
    problem = task_problem(sampled_labels(snakemake.input.labels, snakemake.input.lengths))
log.info("%s, layer %s, %s: %d proteins, %d targets", wildcards.task, wildcards.layer, wildcards.features,
         len(problem.proteins), len(problem.targets))
X = pooled_activations(shards, problem.proteins) if raw else pooled_codes(shards, problem.proteins)
per_target, result = run_sparse_probe(problem, X, settings["k"], settings["C"],
                                      BootstrapSettings.from_config(snakemake.params.bootstrap))
result = {"task": wildcards.task, "layer": int(wildcards.layer), "features": wildcards.features, **result}
write_tsv(per_target, snakemake.output.targets)
write_json(snakemake.output.result, result)
for row in result["by_k"]:
    log.info("k=%d: accuracy %s [%s, %s], AUC %s [%s, %s] over %d targets", row["k"], row["accuracy"],
             row["accuracy_low"], row["accuracy_high"], row["auc"], row["auc_low"], row["auc_high"], row["n_targets"])
