"""Snakemake script: the structure file of every protein an SAE's latent page shows."""

from pathlib import Path

from protsae.browser.examples import STRUCTURE_GROUP, read_table
from protsae.browser.site import write_structures
from protsae.browser.structures import load_backbones
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
shown = set()
for path in snakemake.input.examples:
    table = read_table(path)
    shown |= set(table.loc[table["group"] == STRUCTURE_GROUP, "protein"])
backbones = load_backbones(snakemake.input.structures, shown) if shown else {}
write_structures(backbones, out.parent)
log.info("%d structures", len(backbones))
