"""What a steered read-out changed, per conservation class of the family alignment (METHODS.md
section 8): over the residues of the steered sequence (its row's non-gap cells; a gap is never
counted, as unchanged or otherwise), the share equal to the original residue and to the model's
unsteered read-out, the share of changed residues that became the column's consensus, and the mean
shift of the consensus residue's log-probability against the unsteered read-out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from protsae.steering.consensus import CONSERVATION_CLASSES

CLASSES = (*CONSERVATION_CLASSES.values(), "all")


def steering_metrics(original: str, unsteered: str, steered: str, residue_columns: Sequence[int],
                     columns: pd.DataFrame, consensus_shift: np.ndarray) -> list[dict]:
    """One row per conservation class (and ``all``) of one steered sequence at one multiplier.

    original, unsteered, steered: the sequence, the model's read-out without steering and with it
    (equal lengths). residue_columns: the alignment column of each residue. columns: the
    alignment's column table (`Alignment.columns`). consensus_shift: per residue, the steered
    minus the unsteered log-probability of its column's consensus residue (nan where there is
    none). Rows: conservation, n_residues, n_changed, unchanged_vs_original,
    unchanged_vs_unsteered, to_consensus (share of changed residues that became the consensus;
    nan when none changed), consensus_logprob_shift (nan when no residue has a consensus).
    """
    n = len(original)
    if not (len(unsteered) == len(steered) == len(residue_columns) == len(consensus_shift) == n):
        raise ValueError(f"lengths differ: sequence {n}, unsteered {len(unsteered)}, steered {len(steered)}, "
                         f"aligned residues {len(residue_columns)}, shifts {len(consensus_shift)}")
    table = columns.set_index("column")
    conservation = table["conservation"].to_numpy()[list(residue_columns)]
    consensus = table["consensus"].to_numpy()[list(residue_columns)]
    orig, base, new = (np.array(list(s)) for s in (original, unsteered, steered))
    changed = new != orig
    rows = []
    for name in CLASSES:
        cells = np.ones(n, dtype=bool) if name == "all" else conservation == name
        shift = consensus_shift[cells]
        n_changed = int((changed & cells).sum())
        rows.append({
            "conservation": name,
            "n_residues": int(cells.sum()),
            "n_changed": n_changed,
            "unchanged_vs_original": float((~changed[cells]).mean()) if cells.any() else float("nan"),
            "unchanged_vs_unsteered": float((new[cells] == base[cells]).mean()) if cells.any() else float("nan"),
            "to_consensus": float((new[changed & cells] == consensus[changed & cells]).mean())
            if n_changed else float("nan"),
            "consensus_logprob_shift": float(np.nanmean(shift)) if np.isfinite(shift).any() else float("nan"),
        })
    return rows
