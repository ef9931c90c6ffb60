"""Snakemake script: the activation-pattern class of every latent of one SAE (paper Table 2),
from the per-residue tracks of its top test sequences."""

from protsae.codes.maxima import MaxActivations
from protsae.files import write_json, write_tsv
from protsae.latents.evalset import read_split
from protsae.latents.patterns import activation_patterns, summarise_patterns
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
maxima = MaxActivations.load(snakemake.input.maxima)
split = read_split(snakemake.input.split)
test = split.index[split["split"] == "test"].tolist()
table = activation_patterns(
    list(snakemake.params.codes), maxima, test, split["length"].to_dict(),
    n_top=snakemake.params.n_top, fraction=snakemake.params.top_fraction, min_top=snakemake.params.min_top,
)
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])
summary = {**spec.coordinates(), **summarise_patterns(table)}
write_tsv(table, snakemake.output.table)
write_json(snakemake.output.summary, summary)
log.info("%s", summary)
