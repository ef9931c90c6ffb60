"""Snakemake script: the family alignment of every family-specific latent of one SAE."""

from pathlib import Path

import pandas as pd

from protsae.codes.maxima import MaxActivations
from protsae.files import write_tsv
from protsae.latents.families import read_labels
from protsae.logs import setup_logging
from protsae.sequences.fasta import read_fasta
from protsae.steering.run import SteeringSettings, align_families, steered_latents_of

log = setup_logging(snakemake.log[0])
settings = SteeringSettings.from_config(snakemake.config["steering"])
maxima = MaxActivations.load(snakemake.input.maxima)
latents = steered_latents_of(snakemake.input.f1, maxima, snakemake.input.split, snakemake.params.n_top,
                             snakemake.params.top_fraction, settings.f1_min)
log.info("%d latents with test F1 > %g (steering.f1_min)", len(latents), settings.f1_min)
db = Path(snakemake.input.db)
proteins = {record.seq_id: record.sequence for record in read_fasta(db / "proteins.fasta")}
overview, rows, columns = align_families(latents, proteins, read_labels(snakemake.input.labels)[["protein", "accession"]],
                                         str(db / "proteins"), settings, threads=snakemake.threads,
                                         labels_source=snakemake.input.labels)
if not overview.empty:
    overview = overview.merge(latents.drop(columns="top"), on=["latent", "family"])
    log.info("aligned %d latents (%d hits in all); %d had too few sequences", (overview["status"] == "aligned").sum(),
             overview["n_hits"].sum(), (overview["status"] != "aligned").sum())
else:
    overview = pd.DataFrame(columns=["latent", "family", "n_top", "n_hits", "n_rows", "status", "family_name", "test_f1"])
write_tsv(overview, snakemake.output.latents)
write_tsv(rows, snakemake.output.rows)
write_tsv(columns, snakemake.output.columns)
