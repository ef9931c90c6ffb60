"""Snakemake script: one SAE's pages of the latent browser: the latent table and every latent's
data file (examples, structures, family, patterns, gap candidates, probes, steering)."""

import json
from pathlib import Path

import pandas as pd
from pandas.errors import EmptyDataError

from protsae.browser.examples import STRUCTURE_GROUP, read_table
from protsae.browser.site import read_chunks, write_sae_site
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
spec = SAESpec.from_wildcards(snakemake.wildcards, snakemake.config["sae"]["train_dataset"])


def tsv(path, **options):
    """A result table; empty when its file is (an SAE whose family latents steered nothing)."""
    try:
        return pd.read_csv(path, sep="\t", **({"keep_default_na": False, "na_values": [""]} | options))
    except EmptyDataError:
        return pd.DataFrame()


examples = read_table(inputs.examples)
structures = None
if "structures" in inputs.keys():  # noqa: SIM118 (a Snakemake Namedlist)
    structures = read_table(inputs.structures)
    structures = structures[structures["group"] == STRUCTURE_GROUP]
probes = {}
if "probes" in inputs.keys():  # noqa: SIM118 (a Snakemake Namedlist)
    probes = {task: tsv(path) for task, path in zip(params.tasks, inputs.probes)}
steering = None
if "steering" in inputs.keys():  # noqa: SIM118 (a Snakemake Namedlist)
    steering = dict(zip(("latents", "metrics", "alignment_rows"), map(tsv, inputs.steering[:3])))
    # Clustal's conservation symbols include a space; keep every column as written.
    steering["alignment_columns"] = tsv(inputs.steering[3], keep_default_na=False, dtype={"symbol": str})
neighbours = None
if "neighbours" in inputs.keys():  # noqa: SIM118 (a Snakemake Namedlist)
    with open(inputs.neighbours) as handle:
        neighbours = {int(latent): items for latent, items in json.load(handle).items()}
out = Path(snakemake.output[0])
depth = len(Path(spec.folder).parts)
counts = write_sae_site(
    out, sae={**spec.as_dict(), "name": spec.name, "evalset": params.evalset, "f1_cutoff": params.f1_cutoff},
    prefix="../" * depth, overview=read_table(inputs.overview), examples=examples[examples["group"] < STRUCTURE_GROUP],
    structures=structures, family=tsv(inputs.family), patterns=tsv(inputs.patterns), gaps=tsv(inputs.gaps),
    probes=probes, steering=steering, chunks=read_chunks(Path(inputs.chunks) / "chunks.tsv"),
    neighbours=neighbours, network_folders={int(layer): folder for layer, folder in params.network_folders.items()})
log.info("%s: %s", spec.folder, counts)
