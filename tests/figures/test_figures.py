"""Figures: SAE sweeps from the summary table of the sweep they name; latent figures from per-SAE rows."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from protsae.figures.latents import PATTERN_STYLE, plot_latent_figure
from protsae.figures.sae import plot_sae_sweep, sweep_rows
from protsae.latents.patterns import REPORT_ORDER


def summary_table():
    rows = []
    for layer in (1, 2, 3):
        rows.append(dict(layer=layer, variant="topk", k=32, width=2048, heldout_fvu=0.2 / layer,
                         dead_share=0.0, delta_ce=0.1 * layer, loss_recovered=0.9))
    for k in (16, 64):
        rows.append(dict(layer=3, variant="topk", k=k, width=2048, heldout_fvu=0.5 / k, dead_share=0.01,
                         delta_ce=0.05, loss_recovered=0.95))
    return pd.DataFrame(rows)


def test_sweep_rows_select_the_grid():
    table = summary_table()
    assert len(sweep_rows(table, {"layers": [1, 2, 3], "k": [32], "width": [2048]})) == 3
    assert sorted(sweep_rows(table, {"layers": [3], "k": [16, 32, 64], "width": [2048]})["k"]) == [16, 32, 64]
    assert sweep_rows(table, {"layers": [3], "k": [32], "width": [2048], "variant": "relu_l1"}).empty


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "k.png"
    plot_sae_sweep(summary_table(), {"name": "k", "layers": [3], "k": [16, 32, 64], "width": [2048]}, path, "demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_empty_sweep_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no SAEs of sweep 'x'"):
        plot_sae_sweep(summary_table(), {"name": "x", "layers": [9], "k": [1], "width": [1]}, tmp_path / "x.png", "t")


def latent_rows():
    rows = []
    for layer in (1, 2, 3, 4):
        counts = {f"pattern_{name}": 0 for name in REPORT_ORDER}
        counts |= {"pattern_point": 100 * layer, "pattern_motif_short": 50, "pattern_dead": 10}
        rows.append(dict(layer=layer, variant="topk", k=32, width=2048, n_latents=2048,
                         n_family_specific=3 * layer, **counts))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kinds", [["family"], ["patterns"], ["family", "patterns"]])
def test_latent_figure_writes_a_png(tmp_path, kinds):
    path = tmp_path / "fig.png"
    plot_latent_figure(latent_rows().iloc[::-1], kinds, "layer", path, "demo: per layer")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_latent_figure_needs_rows(tmp_path):
    with pytest.raises(ValueError, match="no SAEs"):
        plot_latent_figure(latent_rows().iloc[:0], ["family"], "layer", tmp_path / "x.png", "t")


def test_figures_load_without_torch():
    """Figure jobs only plot tables; importing torch would cost each of them seconds."""
    code = "import sys, protsae.figures; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_every_pattern_class_has_a_style():
    from protsae.latents.patterns import PATTERNS

    assert set(PATTERN_STYLE) == set(REPORT_ORDER) == set(PATTERNS) and len(REPORT_ORDER) == len(PATTERNS)


def test_family_bars_draw_the_bootstrap_interval(tmp_path):
    import matplotlib.pyplot as plt

    from protsae.figures.latents import _family_bars

    rows = latent_rows().assign(n_family_specific_low=lambda t: t["n_family_specific"] - 2,
                                n_family_specific_high=lambda t: t["n_family_specific"] + 5)
    fig, ax = plt.subplots()
    _family_bars(ax, rows, "layer", 0.7, "InterPro Family")
    segments = [segment for collection in ax.collections for segment in collection.get_segments()]
    assert sorted((s[0][1], s[1][1]) for s in segments) == [(3 * layer - 2, 3 * layer + 5) for layer in (1, 2, 3, 4)]
    assert ax.get_ylim()[1] >= 17  # room above the highest error bar
    plt.close(fig)
    plot_latent_figure(rows, ["family"], "layer", tmp_path / "fig.png", "demo")


def test_probe_layers_draw_error_bars(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from protsae.figures import probes

    rows = pd.DataFrame([
        {"task": "localization", "layer": layer, "kind": kind, "label": kind, "metric": "accuracy",
         "test_score": 0.5 + 0.1 * layer, "test_score_low": 0.45 + 0.1 * layer, "test_score_high": 0.58 + 0.1 * layer}
        for layer in (1, 2) for kind in ("raw", "sae")
    ])
    drawn = []
    original = plt.Axes.errorbar

    def spy(self, x, y, yerr=None, **kwargs):
        drawn.append(yerr)
        return original(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(plt.Axes, "errorbar", spy)
    probes.plot_probe_layers(rows, tmp_path / "fig4.png", "demo")
    assert len(drawn) == 2
    for yerr in drawn:
        assert np.allclose(yerr, [[0.05, 0.05], [0.08, 0.08]])
    assert probes._error_bars(rows.drop(columns=["test_score_low", "test_score_high"])) is None
