"""Snakemake script: the feature network of the sweep's SAEs from its pairs' edges: one edge table,
the node table, each layer's neighbour lists, GraphML and a summary (edge counts by kind, the
strongest causal edges, how well co-activation predicts them)."""

import json

import pandas as pd

from protsae.files import atomic_path, write_json, write_tsv
from protsae.logs import setup_logging
from protsae.networks.graph import (
    neighbour_lists,
    network_summary,
    node_table,
    write_graphml,
)

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
layers = snakemake.params.layers
edges = pd.concat([pd.read_csv(path, sep="\t") for path in snakemake.input.edges], ignore_index=True)
family = {layer: pd.read_csv(path, sep="\t") for layer, path in zip(layers, snakemake.input.family)}
patterns = {layer: pd.read_csv(path, sep="\t") for layer, path in zip(layers, snakemake.input.patterns)}
nodes = node_table(layers, snakemake.params.n_latents, family, patterns, settings["f1_min"])
sources = pd.concat([pd.read_csv(path, sep="\t").assign(layer=int(pair.split("-")[0]))
                     for pair, path in zip(snakemake.params.pairs, snakemake.input.sources)], ignore_index=True)

write_tsv(edges, snakemake.output.edges)
write_tsv(nodes, snakemake.output.nodes)
for layer, path in zip(layers, snakemake.output.neighbours):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            json.dump({str(latent): items for latent, items in neighbour_lists(edges, layer, settings["neighbours"]).items()},
                      handle, separators=(",", ":"))
graph_edges = edges[(edges["kind"] != "coactivation") | (edges["weight"] >= settings["graphml_min_npmi"])]
write_graphml(snakemake.output.graphml, nodes, graph_edges)

summary = network_summary(edges, nodes, sources, layers, agreement_top=settings["agreement_top"])
write_json(snakemake.output.summary, summary)
log.info("edges by kind: %s; agreement: %s", summary["edges_by_kind"], summary["agreement"])
