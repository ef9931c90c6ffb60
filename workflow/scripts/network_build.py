"""Snakemake script: the feature network of the sweep's SAEs from its pairs' edges: one edge table,
the node table, each layer's neighbour lists, GraphML and a summary (edge counts by kind, the
strongest causal edges, how well co-activation predicts them)."""

import json

import numpy as np
import pandas as pd

from protsae.files import atomic_path, write_json, write_tsv
from protsae.logs import setup_logging
from protsae.networks.graph import (
    coactivation_agreement,
    neighbour_lists,
    node_id,
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

described = nodes.set_index("node")
causal = edges[edges["kind"] == "causal"]
strongest = causal.iloc[np.argsort(-np.abs(causal["weight"].to_numpy()), kind="stable")[:15]]
top = []
for row in strongest.itertuples(index=False):
    source, target = described.loc[node_id(row.source_layer, row.source)], described.loc[node_id(row.target_layer, row.target)]
    top.append({"source": node_id(row.source_layer, row.source), "target": node_id(row.target_layer, row.target),
                "effect": float(row.weight), "n_active": int(row.n_active),
                "source_family": source["family_name"], "source_pattern": source["pattern"],
                "target_family": target["family_name"], "target_pattern": target["pattern"]})
counts = edges.groupby(["kind", "source_layer", "target_layer"]).size()
summary = {
    "layers": layers,
    "edges_by_kind": {kind: int(n) for kind, n in edges["kind"].value_counts().items()},
    "edges_by_pair": [{"kind": kind, "source_layer": int(s), "target_layer": int(t), "n": int(n)}
                      for (kind, s, t), n in counts.items()],
    "n_sources": int(len(sources)), "sources_with_proteins": int((sources["n_proteins"] > 0).sum()),
    "strongest_causal": top,
    "agreement": coactivation_agreement(edges, top=settings["agreement_top"]),
}
write_json(snakemake.output.summary, summary)
log.info("edges by kind: %s; agreement: %s", summary["edges_by_kind"], summary["agreement"])
