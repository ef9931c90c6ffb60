"""Snakemake script: family-specificity F1 sweep of one SAE's latents, its summary (with a
bootstrap interval of the family-specific count over test proteins) and the annotation-gap
candidates of its family-specific latents."""

from protsae.bootstrap import BootstrapSettings
from protsae.codes.maxima import MaxActivations
from protsae.files import write_json, write_tsv
from protsae.latents.evalset import read_split
from protsae.latents.families import filter_types, read_labels
from protsae.latents.specificity import (
         family_f1_sweep,
         gap_candidates,
         summarise_family_f1,
)
from protsae.latents.specificity_bootstrap import family_count_interval
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])
maxima = MaxActivations.load(snakemake.input.maxima)
split = read_split(snakemake.input.split)["split"]
labels = filter_types(read_labels(snakemake.input.labels), snakemake.params.types)
labels = labels[labels["protein"].isin(split.index)]
log.info("%d proteins (%s), %d labels of types %s on %d of them", len(split), split.value_counts().to_dict(),
         len(labels), snakemake.params.types, labels["protein"].nunique())
table = family_f1_sweep(maxima, split, labels, thresholds=snakemake.params.thresholds, threads=snakemake.threads)
cutoff = snakemake.params.f1_cutoff
gaps = gap_candidates(table, maxima, split, labels, f1_cutoff=cutoff)
bootstrap = BootstrapSettings.from_config(snakemake.params.bootstrap)
summary = {
    **spec.coordinates(),
    "family_types": "/".join(snakemake.params.types) if snakemake.params.types else "any",
    "n_test_proteins": int((split == "test").sum()),
    **summarise_family_f1(table, f1_cutoff=cutoff),
    **family_count_interval(table, maxima, split, labels, cutoff, bootstrap),
    "n_gap_candidates": len(gaps),
}
write_tsv(table, snakemake.output.table)
write_tsv(gaps, snakemake.output.gaps)
write_json(snakemake.output.summary, summary)
log.info("%s", summary)
