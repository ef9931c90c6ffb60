"""Snakemake script: the site's assets (style, scripts, 3Dmol.js) and the sequences of every
protein it can show, in chunks."""

from pathlib import Path

from protsae.browser.site import write_assets, write_proteins
from protsae.logs import setup_logging
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
sequences = {}
for path in snakemake.input.sequences:
    for seq_id, sequence in read_sequences(path):
        if sequences.setdefault(seq_id, sequence) != sequence:
            raise ValueError(f"{path}: protein {seq_id!r} has another sequence in an earlier dataset of the site")
root = Path(snakemake.output.proteins).parent
chunks = write_proteins(sequences, root)
write_assets(root)
log.info("%d proteins in %d chunks", len(chunks), chunks["chunk"].nunique())
