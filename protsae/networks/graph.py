"""The feature network of a layer sweep as files (METHODS.md section 11): one edge table of every
kind, a node table (family, F1, pattern class per latent), each latent's neighbour lists (what the
browser's latent page links to), GraphML for Cytoscape / Gephi, and how well co-activation
predicts the causal edges."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from protsae.files import atomic_path
from protsae.latents.specificity import family_specific

EDGE_COLUMNS = ("kind", "source_layer", "source", "target_layer", "target", "weight",
                "n_source", "n_target", "n_both", "jaccard", "n_active")
"""weight: NPMI (coactivation), cosine (decoder), mean drop of the target (causal). n_*: residue
counts of co-activation; n_active: residues where a causal source was active."""

KINDS = ("coactivation", "decoder", "causal")


def node_id(layer: int, latent: int) -> str:
    return f"L{layer}:{latent}"


def edge_rows(kind: str, source_layer: int, target_layer: int, table: pd.DataFrame, weight: str) -> pd.DataFrame:
    """``table`` (source, target, ``weight`` and any of the count columns) as rows of the edge
    table, labelled with ``kind`` and the two layers."""
    if kind not in KINDS:
        raise ValueError(f"unknown edge kind {kind!r} (have {KINDS})")
    rows = pd.DataFrame({"kind": kind, "source_layer": source_layer, "source": table["source"].astype(np.int64),
                         "target_layer": target_layer, "target": table["target"].astype(np.int64),
                         "weight": table[weight].astype(float)})
    for column in EDGE_COLUMNS[6:]:
        rows[column] = table[column] if column in table else np.nan
    return rows[list(EDGE_COLUMNS)]


def top_per_source(table: pd.DataFrame, n: int, by: str = "weight", absolute: bool = True) -> pd.DataFrame:
    """Each source's ``n`` rows with the largest |``by``| (``absolute``) or ``by``, in that order
    (ties: target)."""
    values = table[by].to_numpy(float)
    order = np.lexsort((table["target"].to_numpy(), -(np.abs(values) if absolute else values),
                        table["source"].to_numpy()))
    return table.iloc[order].groupby("source", sort=False).head(n).reset_index(drop=True)


def node_table(layers: Sequence[int], n_latents: Mapping[int, int], family: Mapping[int, pd.DataFrame],
               patterns: Mapping[int, pd.DataFrame], f1_min: float) -> pd.DataFrame:
    """One row per latent of every layer's SAE: node, layer, latent, pattern, family and
    family_name (where the latent is family-specific: test F1 above ``f1_min``), test_f1."""
    tables = []
    for layer in layers:
        nodes = pd.DataFrame({"layer": layer, "latent": np.arange(n_latents[layer])})
        pattern = patterns[layer].set_index("latent")["pattern"]
        nodes["pattern"] = pattern.reindex(nodes["latent"]).fillna("unknown").to_numpy()
        scored = family_specific(family[layer], f1_min).set_index("latent")
        nodes["family"] = scored["family"].reindex(nodes["latent"]).fillna("").to_numpy()
        nodes["family_name"] = scored["family_name"].reindex(nodes["latent"]).fillna("").to_numpy()
        nodes["test_f1"] = scored["test_f1"].reindex(nodes["latent"]).to_numpy(float)
        tables.append(nodes)
    nodes = pd.concat(tables, ignore_index=True)
    nodes.insert(0, "node", [node_id(layer, latent) for layer, latent in zip(nodes["layer"], nodes["latent"])])
    return nodes


def neighbour_lists(edges: pd.DataFrame, layer: int, n: int) -> dict[int, list[dict]]:
    """Latent of ``layer`` -> its neighbours: per kind and direction (``out``: it is the source,
    ``in``: the target; within one layer ``with``), the ``n`` strongest by |weight|; each
    neighbour as kind, direction, layer, latent, weight."""
    ends = []
    for side, other, direction in (("source", "target", "out"), ("target", "source", "in")):
        mine = edges[edges[f"{side}_layer"] == layer]
        same = mine["source_layer"] == mine["target_layer"]
        ends.append(pd.DataFrame({
            "latent": mine[side].to_numpy(), "kind": mine["kind"].to_numpy(),
            "direction": np.where(same, "with", direction), "layer": mine[f"{other}_layer"].to_numpy(),
            "other": mine[other].to_numpy(), "weight": mine["weight"].to_numpy(float)}))
    both = pd.concat(ends, ignore_index=True)
    both = both.iloc[np.lexsort((both["other"].to_numpy(), -np.abs(both["weight"].to_numpy())))]
    both = both.groupby(["latent", "kind", "direction"], sort=False).head(n)
    lists: dict[int, list[dict]] = {}
    for row in both.sort_values(["latent", "kind", "direction"], kind="stable").itertuples(index=False):
        lists.setdefault(int(row.latent), []).append({
            "kind": row.kind, "direction": row.direction, "layer": int(row.layer), "latent": int(row.other),
            "weight": round(float(row.weight), 5)})
    return lists


def write_graphml(path: str | os.PathLike, nodes: pd.DataFrame, edges: pd.DataFrame) -> None:
    """GraphML (directed) of the latents that some edge touches, with their family, pattern and
    F1 as node data and each edge's kind and weight (Cytoscape and Gephi read it)."""
    used = set(zip(edges["source_layer"], edges["source"])) | set(zip(edges["target_layer"], edges["target"]))
    keep = nodes[[(layer, latent) in used for layer, latent in zip(nodes["layer"], nodes["latent"])]]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">']
    node_keys = (("layer", "int"), ("latent", "int"), ("pattern", "string"), ("family", "string"),
                 ("family_name", "string"), ("test_f1", "double"))
    for name, kind in node_keys:
        lines.append(f'  <key id="{name}" for="node" attr.name="{name}" attr.type="{kind}"/>')
    for name, kind in (("kind", "string"), ("weight", "double")):
        lines.append(f'  <key id="e_{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>')
    lines.append('  <graph id="features" edgedefault="directed">')
    for row in keep.itertuples(index=False):
        data = "".join(f'<data key="{name}">{_text(getattr(row, name))}</data>' for name, _ in node_keys
                       if not (name == "test_f1" and np.isnan(row.test_f1)))
        lines.append(f'    <node id={quoteattr(row.node)}>{data}</node>')
    for i, row in enumerate(edges.itertuples(index=False)):
        source, target = node_id(row.source_layer, row.source), node_id(row.target_layer, row.target)
        lines.append(f'    <edge id="e{i}" source={quoteattr(source)} target={quoteattr(target)}>'
                     f'<data key="e_kind">{row.kind}</data><data key="e_weight">{row.weight:.6g}</data></edge>')
    lines += ["  </graph>", "</graphml>", ""]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))


def _text(value) -> str:
    return escape(str(value))


def coactivation_agreement(edges: pd.DataFrame, top: int = 5) -> dict:
    """How well co-activation predicts the causal edges, over the (source, target) pairs of the
    causal edges between two layers: Spearman's rho of NPMI against the causal effect over the
    pairs that have both (the others lack the minimum co-occurrence), and per source the share of
    its ``top`` strongest positive causal targets that are among its ``top`` highest-NPMI targets
    (mean over sources; chance is about top / width)."""
    causal = edges[(edges["kind"] == "causal") & (edges["source_layer"] != edges["target_layer"])]
    coact = edges[(edges["kind"] == "coactivation") & (edges["source_layer"] != edges["target_layer"])]
    keys = ["source_layer", "source", "target_layer", "target"]
    joined = causal.merge(coact[keys + ["weight"]], on=keys, suffixes=("", "_npmi"))
    rho = float(spearmanr(joined["weight"], joined["weight_npmi"]).statistic) if len(joined) > 2 else float("nan")
    shares = []
    for (layer, source), group in causal[causal["weight"] > 0].groupby(["source_layer", "source"]):
        strongest = set(group.nlargest(top, "weight")["target"])
        mine = coact[(coact["source_layer"] == layer) & (coact["source"] == source)]
        by_npmi = set(mine.nlargest(top, "weight")["target"])
        shares.append(len(strongest & by_npmi) / len(strongest))
    return {"n_causal_pairs": int(len(causal)), "n_with_npmi": int(len(joined)), "spearman_npmi_effect": rho,
            "top": top, "n_sources": len(shares),
            "top_overlap": float(np.mean(shares)) if shares else float("nan")}


def network_summary(edges: pd.DataFrame, nodes: pd.DataFrame, sources: pd.DataFrame, layers: Sequence[int],
                    agreement_top: int = 5, n_strongest: int = 15) -> dict:
    """What a network holds: edge counts by kind and by layer pair, the causal sources chosen (and
    how many had proteins), the ``n_strongest`` causal edges with their latents' families and
    pattern classes, and `coactivation_agreement`."""
    described = nodes.set_index("node")
    causal = edges[edges["kind"] == "causal"]
    strongest = causal.iloc[np.argsort(-np.abs(causal["weight"].to_numpy()), kind="stable")[:n_strongest]]
    top = []
    for row in strongest.itertuples(index=False):
        source, target = node_id(row.source_layer, row.source), node_id(row.target_layer, row.target)
        top.append({"source": source, "target": target, "effect": float(row.weight), "n_active": int(row.n_active),
                    "source_family": described.loc[source, "family_name"],
                    "source_pattern": described.loc[source, "pattern"],
                    "target_family": described.loc[target, "family_name"],
                    "target_pattern": described.loc[target, "pattern"]})
    counts = edges.groupby(["kind", "source_layer", "target_layer"]).size()
    return {
        "layers": list(layers),
        "edges_by_kind": {kind: int(n) for kind, n in edges["kind"].value_counts().items()},
        "edges_by_pair": [{"kind": kind, "source_layer": int(s), "target_layer": int(t), "n": int(n)}
                          for (kind, s, t), n in counts.items()],
        "n_sources": int(len(sources)), "sources_with_proteins": int((sources["n_proteins"] > 0).sum()),
        "strongest_causal": top,
        "agreement": coactivation_agreement(edges, top=agreement_top),
    }
