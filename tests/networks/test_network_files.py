"""One layer pair's edges on the planted chain (every kind, labelled), the choice of causal
sources, and the network's files: neighbour lists, GraphML, node table, agreement, figure."""

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from test_causal import ChainLM, basis_sae

from protsae.codes.maxima import MaxActivations
from protsae.figures.networks import network_figure, strongest_subnetwork
from protsae.models import STANDARD_RESIDUES
from protsae.networks.graph import (
    EDGE_COLUMNS,
    coactivation_agreement,
    neighbour_lists,
    node_table,
    top_per_source,
    write_graphml,
)
from protsae.networks.pair import pair_edges, sample_ids
from protsae.networks.sources import (
    choose_sources,
    family_sources,
    probe_sources,
    top_proteins,
)


@pytest.fixture(scope="module")
def chain_edges():
    model = ChainLM()
    source, target = basis_sae([0, 1, 2, 3], k=4), basis_sae([4, 5, 6, 7], k=4)
    rng = np.random.default_rng(0)
    sequences = {f"p{i}": "".join(rng.choice(list(STANDARD_RESIDUES), 30)) for i in range(6)}
    across = pair_edges(model, source, 1, target, 2, sequences, sorted(sequences), {0: ["p0", "p1"], 1: ["p2"], 2: []},
                        min_both=1, causal_top=3, max_tokens=64)
    within = pair_edges(model, source, 1, source, 1, sequences, sorted(sequences), {}, min_both=1)
    return across, within


def test_a_pair_has_every_kind_and_the_chain_is_its_strongest_causal_edge(chain_edges):
    across, within = chain_edges
    assert list(across.columns) == list(EDGE_COLUMNS)
    assert set(across["kind"]) == {"coactivation", "decoder", "causal"}
    causal = across[across["kind"] == "causal"]
    assert (causal.iloc[0]["source"], causal.iloc[0]["target"]) == (0, 1) and causal.iloc[0]["weight"] > 0
    assert set(causal["source"]) == {0}  # latent 1 reaches no target latent; latent 2 had no proteins
    assert causal.iloc[0]["n_active"] == 60  # the two proteins it was removed from, every residue
    # Basis SAEs on disjoint directions: every best decoder match has cosine 0.
    decoder = across[across["kind"] == "decoder"]
    assert len(decoder) == 4 and np.allclose(decoder["weight"], 0)
    # The embedding is non-negative and dense: every latent fires on every residue, so NPMI is 1.
    coactivation = across[across["kind"] == "coactivation"]
    assert len(coactivation) == 16 and np.allclose(coactivation["weight"], 1) and (coactivation["n_both"] == 180).all()
    assert set(within["kind"]) == {"coactivation"} and len(within) == 6  # pairs a < b of four latents
    assert (within["source_layer"] == within["target_layer"]).all() and (within["source"] < within["target"]).all()


def test_sample_ids_is_a_seeded_draw_in_order():
    ids = [f"p{i}" for i in range(100)]
    drawn = sample_ids(ids, 10, seed=3)
    assert drawn == sample_ids(ids, 10, seed=3) and drawn == sorted(drawn, key=ids.index) and len(set(drawn)) == 10
    assert drawn != sample_ids(ids, 10, seed=4)
    assert sample_ids(ids, None, 0) == ids and sample_ids(ids, 500, 0) == ids


def test_sources_take_family_and_probe_latents_in_turn():
    f1 = pd.DataFrame({"latent": [5, 6, 7, 8], "status": ["scored", "scored", "no_family", "scored"],
                       "test_f1": [0.8, 0.95, 0.99, 0.5], "family": ["IPR1", "IPR2", "", "IPR3"],
                       "family_name": ["A", "B", "", "C"]})
    family = family_sources(f1, f1_min=0.7)
    assert family["latent"].tolist() == [6, 5] and family["why"].iloc[0].startswith("family:IPR2 B (F1 0.95)")
    top = pd.DataFrame({"class": ["H", "H", "E", "E"], "sign": ["positive", "negative", "positive", "positive"],
                        "rank": [1, 1, 1, 2], "feature": [9, 1, 6, 3], "coefficient": [0.3, -0.9, 0.5, 0.1]})
    probe = probe_sources([("ss", top)])
    assert probe["latent"].tolist() == [6, 9, 3] and probe["why"].iloc[1] == "probe:ss H (+0.30)"
    chosen = choose_sources(family, probe, max_sources=4)
    assert chosen["latent"].tolist() == [6, 9, 5, 3]  # 6 came first as a family latent, once
    assert choose_sources(family, probe, 0).empty


def test_top_proteins_are_where_each_source_peaks_highest():
    maxima = MaxActivations(["a", "b", "c"], np.array([0, 0, 1, 2, 2]), np.array([0, 1, 0, 0, 1], np.int32),
                            np.array([1.0, 2.0, 5.0, 3.0, 0.5], np.float32), n_latents=3)
    assert top_proteins(maxima, [0, 1, 2], n=2) == {0: ["b", "c"], 1: ["a", "c"], 2: []}


def edges_table():
    rows = [("causal", 1, 0, 2, 3, 0.9), ("causal", 1, 0, 2, 4, -0.2), ("causal", 1, 1, 2, 4, 0.5),
            ("coactivation", 1, 0, 2, 3, 0.8), ("coactivation", 1, 0, 2, 4, 0.1), ("coactivation", 1, 1, 2, 4, 0.7),
            ("coactivation", 1, 0, 1, 1, 0.4), ("decoder", 1, 0, 2, 3, 0.6)]
    table = pd.DataFrame(rows, columns=list(EDGE_COLUMNS[:6]))
    for column in EDGE_COLUMNS[6:]:
        table[column] = 1
    return table


def nodes_table():
    family = {layer: pd.DataFrame({"latent": [0], "status": ["scored"], "test_f1": [0.9], "family": ["IPR9"],
                                   "family_name": ["Kinase <domain> & co"]}) for layer in (1, 2)}
    patterns = {layer: pd.DataFrame({"latent": range(5), "pattern": ["point", "motif_short", "whole", "other", "dead"]})
                for layer in (1, 2)}
    return node_table([1, 2], {1: 5, 2: 5}, family, patterns, f1_min=0.7)


def test_neighbour_lists_have_each_kind_and_direction_strongest_first():
    edges = edges_table()
    layer1 = neighbour_lists(edges, 1, n=1)
    out = [item for item in layer1[0] if item["kind"] == "causal"]
    assert out == [{"kind": "causal", "direction": "out", "layer": 2, "latent": 3, "weight": 0.9}]
    within = [item for item in layer1[1] if item["direction"] == "with"]
    assert within == [{"kind": "coactivation", "direction": "with", "layer": 1, "latent": 0, "weight": 0.4}]
    layer2 = neighbour_lists(edges, 2, n=5)
    incoming = [(item["kind"], item["latent"]) for item in layer2[4] if item["direction"] == "in"]
    assert incoming == [("causal", 1), ("causal", 0), ("coactivation", 1), ("coactivation", 0)]


def test_graphml_is_valid_xml_with_the_touched_nodes_and_escaped_names(tmp_path):
    nodes, edges = nodes_table(), edges_table()
    write_graphml(tmp_path / "n.graphml", nodes, edges)
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    graph = ET.parse(tmp_path / "n.graphml").getroot().find("g:graph", ns)
    ids = {node.get("id") for node in graph.findall("g:node", ns)}
    assert ids == {"L1:0", "L1:1", "L2:3", "L2:4"}
    family = graph.find("g:node[@id='L1:0']/g:data[@key='family_name']", ns).text
    assert family == "Kinase <domain> & co"
    kinds = [edge.find("g:data[@key='e_kind']", ns).text for edge in graph.findall("g:edge", ns)]
    assert sorted(set(kinds)) == ["causal", "coactivation", "decoder"] and len(kinds) == len(edges)


def test_node_table_marks_family_specific_latents_only():
    nodes = nodes_table()
    assert len(nodes) == 10 and nodes["node"].iloc[0] == "L1:0"
    assert nodes.loc[nodes["latent"] == 0, "family"].tolist() == ["IPR9", "IPR9"]
    assert (nodes.loc[nodes["latent"] != 0, "family"] == "").all() and nodes["test_f1"].isna().sum() == 8
    assert nodes["pattern"].tolist()[:5] == ["point", "motif_short", "whole", "other", "dead"]


def test_agreement_of_coactivation_with_causal_edges():
    result = coactivation_agreement(edges_table(), top=1)
    assert result["n_causal_pairs"] == 3 and result["n_with_npmi"] == 3
    assert result["spearman_npmi_effect"] == pytest.approx(1.0)  # NPMI ranks the effects in order
    assert result["top_overlap"] == 1.0 and result["n_sources"] == 2


def test_the_figure_draws_the_strongest_causal_edges(tmp_path):
    edges, nodes = edges_table(), nodes_table()
    shown = strongest_subnetwork(edges, 2)
    assert shown["kind"].unique().tolist() == ["causal"] and shown["weight"].tolist() == [0.9, 0.5]
    network_figure(edges, nodes, tmp_path / "fig.png", "test", n_edges=3)
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_largest_per_source_keeps_each_sources_highest_rows():
    table = pd.DataFrame({"source": [0, 0, 0, 1, 1], "target": [1, 2, 3, 1, 2], "npmi": [0.2, -0.9, 0.5, 0.1, 0.1]})
    kept = top_per_source(table, 2, by="npmi", absolute=False)
    assert list(zip(kept["source"], kept["target"])) == [(0, 3), (0, 1), (1, 1), (1, 2)]  # -0.9 is not "strong"
