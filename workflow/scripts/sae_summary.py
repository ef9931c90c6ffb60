"""Snakemake script: one table of the metrics of every SAE of the sweeps, each SAE named by the
spec its splice evaluation carries. Scalar metrics only: the latent density histogram stays in
each SAE's metrics.json."""

import json
from pathlib import Path

import pandas as pd

from protsae.files import write_tsv
from protsae.logs import setup_logging
from protsae.sae.train import TIMING_METRICS
from protsae.spec import SAESpec

SPLICE_METRICS = ("delta_ce", "loss_recovered", "delta_ce_with_error", "ce_clean", "kl_recovered", "kl_sae",
                  "kl_zero")

log = setup_logging(snakemake.log[0])
rows = []
for metrics_path, splice_path in zip(snakemake.input.metrics, snakemake.input.splice):
    splice = json.loads(Path(splice_path).read_text())
    missing = [key for key in SPLICE_METRICS if key not in splice]
    if missing:
        raise ValueError(f"{splice_path} lacks {', '.join(missing)}: written by an older protsae; delete it so "
                         "that evaluate_sae writes it again")
    spec = SAESpec.from_dict(splice["sae"])
    rows.append({
        "layer": spec.layer, "variant": spec.variant, "k": spec.k, "width": spec.width,
        **{key: value for key, value in json.loads(Path(metrics_path).read_text()).items()
           if key not in TIMING_METRICS and not isinstance(value, (dict, list))},
        **{key: splice[key] for key in SPLICE_METRICS},
        "path": str(Path(metrics_path).parent),
    })
table = pd.DataFrame(rows).sort_values(["layer", "variant", "k", "width"])
write_tsv(table, snakemake.output[0])
log.info("\n%s", table.drop(columns="path").to_string(index=False))
