"""What a config's head analysis found, in numbers: roles per block, and how well the feature
circuits predict the heads' behaviour (offset profiles, roles, frozen-pattern OV)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from protsae.heads.roles import ROLES, positional_excess


def _number(value) -> float | None:
    """A float for JSON (None for NaN, which JSON has no word for)."""
    return None if pd.isna(value) else float(value)


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(np.median(values)) if len(values) else None


def heads_summary(heads: pd.DataFrame, window: int, top: int = 10) -> dict:
    """Roles per block and overall, agreement between predicted and measured behaviour, and the
    ``top`` heads with the most positional attention (`positional_excess` of the predicted
    profile)."""
    positional = positional_excess(heads, window)
    strongest = heads.assign(positional=positional).sort_values(["positional", "block", "head"],
                                                                ascending=[False, True, True]).head(top)
    return {
        "n_heads": len(heads),
        "blocks": sorted(int(b) for b in heads["block"].unique()),
        "roles": {role: int((heads["role"] == role).sum()) for role in ROLES},
        "roles_by_block": {int(block): {role: int((group["role"] == role).sum()) for role in ROLES
                                        if (group["role"] == role).any()}
                           for block, group in heads.groupby("block")},
        "agreement": {
            "role_matches_measured": float((heads["role"] == heads["measured_role"]).mean()),
            "median_profile_r": _median(heads["profile_r"]),
            "median_profile_tv": _median(heads["profile_tv"]),
            "median_window_share": _median(heads["window_share"]),
            "median_ov_r": _median(heads["ov_r"]),
            "median_ov_slope": _median(heads["ov_slope"]),
        },
        "most_positional": [
            {"block": int(row.block), "head": int(row.head), "role": row.role, "measured_role": row.measured_role,
             "positional_excess": float(row.positional), "profile_r": _number(row.profile_r),
             "window_share": float(row.window_share)}
            for row in strongest.itertuples()
        ],
    }
