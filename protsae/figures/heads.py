"""The head-roles figure: each analysed block's heads coloured by the role their feature circuits
give them (a cross where the model's measured attention gives another), beside the offset
profiles, predicted and measured, of the most positional heads."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from protsae.figures.style import save  # noqa: E402
from protsae.heads.roles import ROLES, positional_excess  # noqa: E402

ROLE_COLOURS = {"previous": "#1f77b4", "next": "#ff7f0e", "periodic_helix": "#2ca02c", "periodic_strand": "#9467bd",
                "copy": "#d62728", "other": "#e0e0e0"}
"""One colour per role (protsae.heads.roles.ROLES), in that order."""


def most_positional(heads: pd.DataFrame, n: int, window: int) -> pd.DataFrame:
    """The ``n`` heads whose predicted profile is the most positional (`positional_excess`)."""
    return heads.assign(excess=positional_excess(heads, window)).sort_values(
        ["excess", "block", "head"], ascending=[False, True, True]).head(n)


def heads_figure(heads: pd.DataFrame, profiles: pd.DataFrame, path: str | os.PathLike, title: str,
                 n_profiles: int = 6) -> None:
    blocks = sorted(heads["block"].unique())
    n_heads = int(heads["head"].max()) + 1
    grid = np.full((len(blocks), n_heads), np.nan)
    row_of = {block: i for i, block in enumerate(blocks)}
    for row in heads.itertuples():
        grid[row_of[row.block], row.head] = ROLES.index(row.role)
    fig, (ax_roles, ax_profiles) = plt.subplots(
        1, 2, figsize=(13, max(4.5, 0.28 * len(blocks) + 2.5)), gridspec_kw={"width_ratios": [1.1, 1]})
    ax_roles.imshow(grid, cmap=ListedColormap([ROLE_COLOURS[r] for r in ROLES]), vmin=-0.5, vmax=len(ROLES) - 0.5,
                    aspect="auto", interpolation="nearest")
    disagree = heads[heads["role"] != heads["measured_role"]]
    ax_roles.scatter(disagree["head"], [row_of[b] for b in disagree["block"]], marker="x", color="black", s=25,
                     linewidths=1, label="measured role differs")
    ax_roles.set_xticks(range(n_heads))
    ax_roles.set_yticks(range(len(blocks)), [str(b) for b in blocks])
    ax_roles.tick_params(axis="x", labelsize=7 if n_heads > 12 else 9)
    ax_roles.set_xlabel("head")
    ax_roles.set_ylabel("block (reads layer l - 1, writes layer l)")
    ax_roles.set_title("Role from the feature circuits")
    counts = heads["role"].value_counts()
    handles = [Patch(color=ROLE_COLOURS[r], label=f"{r.replace('_', ' ')} ({counts.get(r, 0)})") for r in ROLES]
    handles.append(plt.Line2D([], [], marker="x", color="black", linestyle="", label="measured role differs"))
    ax_roles.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8,
                    frameon=False)

    window = int(profiles["offset"].max())
    shown = most_positional(heads, n_profiles, window)
    colours = plt.cm.tab10(np.arange(len(shown)) % 10)
    for colour, row in zip(colours, shown.itertuples()):
        profile = profiles[(profiles["block"] == row.block) & (profiles["head"] == row.head)].sort_values("offset")
        label = f"block {row.block} head {row.head} ({row.role.replace('_', ' ')}, r = {row.profile_r:.2f})"
        ax_profiles.plot(profile["offset"], profile["measured"], color=colour, lw=1.8, label=label)
        ax_profiles.plot(profile["offset"], profile["predicted"], color=colour, lw=1.2, ls="--")
    ax_profiles.plot([], [], color="grey", lw=1.8, label="measured (model's attention)")
    ax_profiles.plot([], [], color="grey", lw=1.2, ls="--", label="predicted (QK of the SAE codes)")
    offsets = sorted(profiles["offset"].unique())
    ax_profiles.set_xticks(offsets)
    ax_profiles.axvline(0, color="grey", lw=0.5)
    ax_profiles.set_xlabel("key offset (key residue - query residue)")
    ax_profiles.set_ylabel("share of attention within the window")
    ax_profiles.set_ylim(0, 1.02)
    ax_profiles.set_title(f"Offset profiles of the {len(shown)} most positional heads")
    ax_profiles.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    save(fig, path)
