"""The feature-network figure: the strongest causal edges of a layer sweep drawn layer by layer,
latents coloured by activation pattern and labelled with their family where they are
family-specific."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from protsae.figures.latents import PATTERN_STYLE  # noqa: E402
from protsae.figures.style import save  # noqa: E402
from protsae.networks.graph import node_id  # noqa: E402

UNKNOWN_COLOUR = "#eeeeee"
"""A latent with no pattern table row; the classes take their colours from the latent figures."""


def _colour(pattern: str) -> str:
    return PATTERN_STYLE[pattern][1] if pattern in PATTERN_STYLE else UNKNOWN_COLOUR


def strongest_subnetwork(edges: pd.DataFrame, n_edges: int) -> pd.DataFrame:
    """The ``n_edges`` causal edges of largest |effect| (the co-activation edges between layers
    when there are no causal ones)."""
    kind = "causal" if (edges["kind"] == "causal").any() else "coactivation"
    chosen = edges[(edges["kind"] == kind) & (edges["source_layer"] != edges["target_layer"])]
    return chosen.iloc[np.argsort(-np.abs(chosen["weight"].to_numpy()), kind="stable")[:n_edges]]


def network_figure(edges: pd.DataFrame, nodes: pd.DataFrame, path: str | os.PathLike, title: str,
                   n_edges: int = 40) -> None:
    """Plot the strongest subnetwork: one column per layer, each latent a dot coloured by its
    pattern class, family-specific latents labelled; edge width grows with |effect|, red for a
    source that raises its target, blue for one that lowers it."""
    shown = strongest_subnetwork(edges, n_edges)
    described = nodes.set_index("node")
    fig, ax = plt.subplots(figsize=(11, 7.5))
    if shown.empty:
        ax.text(0.5, 0.5, "no edges between layers", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title)
        save(fig, path)
        return
    ends = pd.concat([shown[["source_layer", "source"]].set_axis(["layer", "latent"], axis=1),
                      shown[["target_layer", "target"]].set_axis(["layer", "latent"], axis=1)]).drop_duplicates()
    layers = sorted(ends["layer"].unique())
    position = {}
    for column, layer in enumerate(layers):
        latents = sorted(ends.loc[ends["layer"] == layer, "latent"])
        for row, latent in enumerate(latents):
            position[(layer, latent)] = (column, (row + 0.5) / len(latents))
    scale = np.abs(shown["weight"]).max()
    for row in shown.itertuples(index=False):
        (x0, y0), (x1, y1) = position[(row.source_layer, row.source)], position[(row.target_layer, row.target)]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", lw=0.4 + 3.6 * abs(row.weight) / scale, alpha=0.6,
                                    color="#c0392b" if row.weight > 0 else "#2471a3", shrinkA=5, shrinkB=5))
    for (layer, latent), (x, y) in position.items():
        node = described.loc[node_id(layer, latent)]
        ax.scatter([x], [y], s=70, color=_colour(node["pattern"]),
                   edgecolor="black", linewidth=0.5, zorder=2)
        label = f"{latent}" + (f" {str(node['family_name'])[:22]}" if node["family_name"] else "")
        ax.text(x + 0.04, y, label, fontsize=6.5, va="center", zorder=3)
    ax.set_xticks(range(len(layers)), [f"layer {layer}" for layer in layers])
    ax.set_xlim(-0.3, len(layers) - 0.3)
    ax.set_ylim(-0.03, 1.03)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    shown_patterns = set(described.loc[[node_id(layer, latent) for layer, latent in position], "pattern"])
    present = [name for name in [*PATTERN_STYLE, "unknown"] if name in shown_patterns]
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=_colour(name),
                          label=PATTERN_STYLE.get(name, (name,))[0]) for name in present]
    handles += [plt.Line2D([], [], color="#c0392b", label="raises target"),
                plt.Line2D([], [], color="#2471a3", label="lowers target")]
    ax.legend(handles=handles, title="pattern class / edge", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("layer (SAE of the layer sweep); labels: latent and family where family-specific")
    ax.set_title(f"{title}: the {len(shown)} strongest {shown['kind'].iloc[0]} edges")
    save(fig, path)
