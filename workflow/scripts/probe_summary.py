"""Snakemake script: one row per probe (task, layer, features) with its test metric and its
bootstrap interval, the numeric extras (regression: Pearson r, RMSE, each with its interval), how
the intervals were drawn, and the coefficient statistics."""

import json
from pathlib import Path

import pandas as pd

from protsae.files import write_tsv
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
rows = []
for path in snakemake.input:
    result = json.loads(Path(path).read_text())
    stats = {f"coef_{key}": value for key, value in result.pop("coefficient_stats").items()}
    extras = {key: value for key, value in result.pop("extras").items() if value is None or isinstance(value, (int, float))}
    bootstrap = {f"bootstrap_{key}": value for key, value in result.pop("bootstrap").items()}
    scalars = {key: value for key, value in result.items() if not isinstance(value, (dict, list))}
    rows.append(scalars | extras | bootstrap | stats)
table = pd.DataFrame(rows).sort_values(["task", "layer", "features"])
write_tsv(table, snakemake.output[0])
log.info("\n%s", table[["task", "layer", "features", "metric", "test_score", "test_score_low", "test_score_high",
                        "bootstrap_unit"]].to_string(index=False))
