"""Snakemake script: one row per sparse probe (task, layer, features, k) with the mean test
accuracy and AUC over its targets and their bootstrap intervals, SAE latents next to raw
dimensions."""

import json
from pathlib import Path

import pandas as pd

from protsae.files import write_tsv
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = []
for path in snakemake.input:
    result = json.loads(Path(path).read_text())
    fit = {"task": result["task"], "layer": result["layer"], "features": result["features"],
           "kind": "raw" if result["features"] == "raw" else "sae", "n_features": result["n_features"],
           "n_test": result["n_test"], **{f"bootstrap_{key}": value for key, value in result["bootstrap"].items()}}
    rows += [fit | by_k for by_k in result["by_k"]]
columns = ["task", "layer", "features", "kind", "k", "n_targets", "accuracy", "accuracy_low", "accuracy_high", "auc",
           "auc_low", "auc_high", "n_auc_targets", "n_features", "n_test", "bootstrap_unit", "bootstrap_n_units",
           "bootstrap_n_resamples", "bootstrap_seed", "bootstrap_confidence"]
table = pd.DataFrame(rows, columns=columns).sort_values(["task", "layer", "kind", "features", "k"])
write_tsv(table, snakemake.output[0])
log.info("\n%s", table[["task", "layer", "features", "k", "accuracy", "accuracy_low", "accuracy_high",
                        "auc"]].to_string(index=False))
