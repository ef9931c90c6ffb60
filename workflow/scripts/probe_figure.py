"""Snakemake script: Fig 4 (probe metric per layer, raw vs SAE) or Fig 9 (coefficient
distributions, raw vs SAE)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.figures.probes import plot_probe_coefficients, plot_probe_layers
from protsae.logs import setup_logging

log = setup_logging(snakemake.log[0])
model = snakemake.params.model


def fit_of(path):
    """(task, layer, features) from .../probes/<task>/layer<L>/<features>/<file>."""
    features_dir = Path(path).parent
    return features_dir.parent.parent.name, int(features_dir.parent.name.removeprefix("layer")), features_dir.name


if snakemake.wildcards.figure == "fig4_probes_per_layer":
    rows = []
    for path in snakemake.input.fits:
        task, layer, features = fit_of(path)
        result = json.loads(Path(path).read_text())
        rows.append({"task": task, "layer": layer, "kind": "raw" if features == "raw" else "sae",
                     "label": "raw activations" if features == "raw" else f"SAE latents ({features})",
                     "metric": result["metric"], "test_score": result["test_score"]})
    plot_probe_layers(pd.DataFrame(rows), snakemake.output[0], f"{model}: linear probes per layer, raw vs SAE")
else:
    coefs = {}
    for path in snakemake.input.fits:
        task, layer, features = fit_of(path)
        label = f"layer {layer}, " + ("raw activations" if features == "raw" else f"SAE {features}")
        coefs.setdefault(task, {})[label] = np.load(path)
    plot_probe_coefficients(coefs, snakemake.output[0], f"{model}: probe coefficient distributions, raw vs SAE")
log.info("wrote %s", snakemake.output[0])
