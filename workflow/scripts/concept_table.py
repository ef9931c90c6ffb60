"""Snakemake script: one dataset's concept table (its sources and the amino acids) and its concept
split (reference / valid / test, following the dataset's own split)."""

import pandas as pd

from protsae.concepts.coverage import concept_split, write_concept_split
from protsae.concepts.sources import build_concepts
from protsae.concepts.table import write_concepts
from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
entry = snakemake.params.dataset
settings = snakemake.params.split
sequences = dict(read_sequences(snakemake.input.sequences))
split_table = pd.read_csv(snakemake.input.split, sep="\t", dtype=str, keep_default_na=False)
key = "protein" if "protein" in split_table.columns else "id"
split = concept_split(dict(zip(split_table[key], split_table["split"])), list(sequences),
                      max_reference=settings["max_reference"], max_proteins=settings["max_proteins"],
                      valid_fraction=settings["valid_fraction"], seed=settings["seed"])
if not (split == "reference").any() or not (split == "valid").any() or not (split == "test").any():
    raise ValueError(f"{snakemake.input.split}: dataset {dataset} has {split.value_counts().to_dict()} proteins; "
                     "concept coverage needs reference (train), valid and test proteins")
kept = {protein: sequences[protein] for protein in split.index}
table, stats = build_concepts(entry["sources"], kept, amino_acids=entry.get("amino_acids", True),
                              where=f"concepts.datasets.{dataset}")
write_concepts(table, snakemake.output.concepts)
write_concept_split(split, {p: len(s) for p, s in kept.items()}, snakemake.output.split)
stats = {"dataset": dataset, "proteins": split.value_counts().to_dict(),
         "residues": {name: int(sum(len(kept[p]) for p in split.index[split == name])) for name in ("reference", "valid", "test")},
         "concepts": int(table["concept"].nunique()), "instances": len(table), "sources": stats}
write_json(snakemake.output.stats, stats)
log.info("%s", stats)
