"""Snakemake script: one latent figure (3c, 3d, 7a or 7b) from the summaries of its sweep's SAEs
(each summary names its SAE)."""

import json
from pathlib import Path

import pandas as pd

from protsae.figures.latents import plot_latent_figure
from protsae.latents.patterns import pattern_columns
from protsae.logs import setup_logging

FIGURES = {  # figure: (x axis, title)
    "fig3c_patterns_per_layer": ("layer", "Activation patterns per layer"),
    "fig3d_family_specific_per_layer": ("layer", "Family-specific latents per layer"),
    "fig7a_k_sweep": ("k", "Family specificity and activation patterns vs k"),
    "fig7b_width_sweep": ("width", "Family specificity and activation patterns vs width"),
}
SAE_KEYS = ("variant", "layer", "k", "width")

log = setup_logging(snakemake.log[0])
figure = snakemake.wildcards.figure
kinds = [kind for kind in ("family", "patterns") if kind in snakemake.input.keys()]
rows = []
for paths in zip(*(snakemake.input[kind] for kind in kinds)):
    summaries = dict(zip(kinds, (json.loads(Path(path).read_text()) for path in paths)))
    first = next(iter(summaries.values()))
    row = {key: first[key] for key in SAE_KEYS}
    if "family" in summaries:
        row |= summaries["family"]
    if "patterns" in summaries:
        row |= pattern_columns(summaries["patterns"]["counts"])
    rows.append(row)
types = snakemake.params.types
x, title = FIGURES[figure]
plot_latent_figure(
    pd.DataFrame(rows), kinds, x, snakemake.output[0], f"{snakemake.params.model}: {title}",
    f1_cutoff=snakemake.params.f1_cutoff,
    types_label="InterPro " + ("/".join(types) if types else "entries of any type"),
)
log.info("wrote %s (sweep %s)", snakemake.output[0], snakemake.params.sweep)
