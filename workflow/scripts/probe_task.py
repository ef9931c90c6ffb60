"""Snakemake script: load one probe task, subsample it, split it by homology clusters and write
its sequences and labels."""

from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.probes.tasks import assign_splits, load_task, subsample, write_task

log = setup_logging(snakemake.log[0])
task = snakemake.params.task
table = load_task(task["data"])
n_loaded = len(table)
if task["max_items"]:
    table = subsample(table, task["max_items"], task["seed"])
table = assign_splits(table, identity=task["identity"], coverage=task["coverage"], fractions=task["fractions"],
                      seed=task["seed"], threads=snakemake.threads)
write_task(table, snakemake.output.fasta, snakemake.output.labels)
stats = {
    "task": snakemake.wildcards.task,
    "loaded": n_loaded,
    "kept": len(table),
    "clusters": int(table["cluster"].nunique()),
    "splits": table["split"].value_counts().to_dict(),
    "residues": int(table["sequence"].str.len().sum()),
}
if task["probe"] == "protein_classifier":
    stats["classes"] = table.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict()
write_json(snakemake.output.stats, stats)
log.info("%s", stats)
