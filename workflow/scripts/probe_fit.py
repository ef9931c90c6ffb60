"""Snakemake script: one linear probe (task, layer, features = raw activations or one SAE's
latents), its coefficients, the features with the largest ones and, for SAE latents, their
top-activating proteins."""

from pathlib import Path

import torch

from protsae.activations.manifest import verified_manifest
from protsae.bootstrap import BootstrapSettings
from protsae.files import write_json, write_tsv
from protsae.logs import setup_logging
from protsae.probes.fit import run_probe, sampled_labels, save_coefficients
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
# One thread: the residue probe's small mini-batch steps ran 2.4x slower on two busy threads.
torch.set_num_threads(1)
wildcards = snakemake.wildcards
raw = wildcards.features == "raw"
log.info("%s, layer %s, %s", wildcards.task, wildcards.layer, wildcards.features)
if raw:
    verified_manifest(snakemake.input.manifest, snakemake.params.shards)
labels = sampled_labels(snakemake.input.labels, snakemake.input.lengths)
fit = run_probe(
    wildcards.task, snakemake.params.task, snakemake.params.probes, int(wildcards.layer), wildcards.features, labels,
    list(snakemake.params.shards),
    sequences={} if raw else dict(read_sequences(snakemake.input.sequences)),
    bootstrap=BootstrapSettings.from_config(snakemake.params.bootstrap),
)
save_coefficients(fit.result.coef, snakemake.output.coef)
write_tsv(fit.top, snakemake.output.top)
write_json(snakemake.output.result, fit.summary)
log.info("%s %s: test %s %.4f [%s, %s] (%s = %g)", Path(snakemake.output.result).parent, fit.result.task,
         fit.result.metric, fit.result.test_score, fit.summary["test_score_low"], fit.summary["test_score_high"],
         fit.result.hparam, fit.result.chosen)
