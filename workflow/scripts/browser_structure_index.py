"""Snakemake script: the structures of the structure dataset's proteins (browser.structures), those
whose residues are the protein's sequence, in one .npz; and a table of every protein's match."""

import pandas as pd

from protsae.browser.structures import load_structures, save_backbones
from protsae.files import atomic_path
from protsae.logs import setup_logging
from protsae.sequences.fasta import read_sequences

log = setup_logging(snakemake.log[0])
sequences = dict(read_sequences(snakemake.input.sequences))
matched, skipped = load_structures(snakemake.params.structures, sequences)
save_backbones(matched, snakemake.output.structures)
index = pd.DataFrame({"id": list(sequences), "length": [len(s) for s in sequences.values()],
                      "structure": [pid in matched for pid in sequences],
                      "why_not": [skipped.get(pid, "") for pid in sequences]})
with atomic_path(snakemake.output.index) as tmp:
    index.to_csv(tmp, sep="\t", index=False)
