"""Snakemake script: Fig 4 (probe metric per layer, raw vs SAE) or Fig 9 (coefficient
distributions, raw vs SAE). Each probe's task, layer and features come from its result.json."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.figures.probes import plot_probe_coefficients, plot_probe_layers
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
model = snakemake.params.model
results = [json.loads(Path(path).read_text()) for path in snakemake.input.fits]


def label(result):
    return "raw activations" if result["features"] == "raw" else f"SAE latents ({result['features']})"


if snakemake.wildcards.figure == "fig4_probes_per_layer":
    rows = [{"task": result["task"], "layer": result["layer"], "kind": "raw" if result["features"] == "raw" else "sae",
             "label": label(result), "metric": result["metric"], "test_score": result["test_score"],
             "test_score_low": result.get("test_score_low"), "test_score_high": result.get("test_score_high")}
            for result in results]
    confidence = {result["bootstrap"]["confidence"] for result in results if "bootstrap" in result}
    bars = f"\n(bars: {100 * confidence.pop():g}% bootstrap intervals)" if len(confidence) == 1 else ""
    plot_probe_layers(pd.DataFrame(rows), snakemake.output[0], f"{model}: linear probes per layer, raw vs SAE{bars}")
else:
    coefs = {}
    for result, path in zip(results, snakemake.input.coefs):
        features = "raw activations" if result["features"] == "raw" else f"SAE {result['features']}"
        coefs.setdefault(result["task"], {})[f"layer {result['layer']}, {features}"] = np.load(path)
    plot_probe_coefficients(coefs, snakemake.output[0], f"{model}: probe coefficient distributions, raw vs SAE")
log.info("wrote %s", snakemake.output[0])
