"""Snakemake script: one table of the metrics of every SAE of the sweeps."""

import json
from pathlib import Path

import pandas as pd

from protsae.files import atomic_path
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = []
for path, splice_path in zip(snakemake.input.metrics, snakemake.input.splice):
    config = json.loads((Path(path).parent / "config.json").read_text())
    splice = json.loads(Path(splice_path).read_text())
    rows.append({
        "layer": int(Path(path).parent.parent.name.removeprefix("layer")),
        "variant": config["variant"],
        "k": config["k"],
        "width": config["n_latents"],
        **json.loads(Path(path).read_text()),
        **{key: splice[key] for key in ("delta_ce", "loss_recovered", "delta_ce_with_error", "ce_clean")},
        "path": str(Path(path).parent),
    })
table = pd.DataFrame(rows).sort_values(["layer", "variant", "k", "width"])
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("\n%s", table.drop(columns="path").to_string(index=False))
