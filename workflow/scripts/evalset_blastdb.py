"""Snakemake script: every protein of the evaluation set's source as FASTA and a BLAST database."""

from pathlib import Path

from protsae.latents.evalset import read_proteins
from protsae.logs import setup_logging
from protsae.sequences.fasta import write_fasta
from protsae.steering.consensus import make_blast_db

log = setup_logging(snakemake.log[0])
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
records = list(read_proteins(snakemake.input.sequences))
write_fasta(records, out / "proteins.fasta")
make_blast_db(out / "proteins.fasta", out / "proteins")
log.info("%d proteins of %s in the BLAST database %s", len(records), snakemake.input.sequences, out / "proteins")
