"""Which latents the causal edges start from (METHODS.md section 11: chosen, not all): an SAE's
family-specific latents (test F1 above a cutoff, best first) and the probes' top latents (largest
positive coefficients first), taken in turn so both kinds are represented, up to a cap; and, per
source, the evaluation proteins it is removed from (those where it peaks highest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from protsae.codes.maxima import MaxActivations
from protsae.latents.specificity import family_specific

SOURCE_COLUMNS = ("latent", "why")


def family_sources(f1_table: pd.DataFrame, f1_min: float) -> pd.DataFrame:
    """Family-specific latents of one SAE's family F1 table, best test F1 first: latent, why
    (``family:<accession> <name> (F1 0.93)``)."""
    scored = family_specific(f1_table, f1_min)
    scored = scored.sort_values(["test_f1", "latent"], ascending=[False, True], kind="stable")
    why = [f"family:{row.family} {row.family_name} (F1 {row.test_f1:.2f})" for row in scored.itertuples()]
    return pd.DataFrame({"latent": scored["latent"].astype(np.int64).to_numpy(), "why": why})


def probe_sources(tops: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The latents with the largest positive probe coefficients (``(task, top_coefficients
    table)`` pairs), largest first over all tasks and classes: latent, why (``probe:<task>
    <class> (+0.41)``)."""
    rows = []
    for task, top in tops:
        positive = top[top["sign"] == "positive"]
        rows += [{"latent": int(feature), "coefficient": float(coefficient),
                  "why": f"probe:{task} {label} ({coefficient:+.2f})"}
                 for feature, label, coefficient in zip(positive["feature"], positive["class"], positive["coefficient"])]
    table = pd.DataFrame(rows, columns=["latent", "coefficient", "why"])
    table = table.sort_values(["coefficient", "latent"], ascending=[False, True], kind="stable")
    return table.drop_duplicates("latent")[list(SOURCE_COLUMNS)].reset_index(drop=True)


def choose_sources(family: pd.DataFrame, probe: pd.DataFrame, max_sources: int) -> pd.DataFrame:
    """Up to ``max_sources`` latents, one family source then one probe source in turn (the rest
    from whichever kind is left), each latent once: latent, why."""
    picked: dict[int, str] = {}
    queues = [list(family.itertuples(index=False)), list(probe.itertuples(index=False))]
    turn = 0
    while len(picked) < max_sources and any(queues):
        queue = queues[turn % 2] or queues[(turn + 1) % 2]
        latent, why = queue.pop(0)
        if int(latent) in picked:
            continue  # a latent both kinds name: the next of this kind takes the turn
        picked[int(latent)] = why
        turn += 1
    return pd.DataFrame({"latent": list(picked), "why": list(picked.values())}, columns=list(SOURCE_COLUMNS))


def top_proteins(maxima: MaxActivations, latents: Sequence[int], n: int) -> dict[int, list[str]]:
    """Per latent, the ids of the (up to) ``n`` proteins where its maximum is largest (ties: the
    earlier protein); a latent that never fires gets none."""
    order = np.lexsort((maxima.protein, -maxima.value))
    latent, protein = maxima.latent[order], maxima.protein[order]
    chosen = {}
    for source in latents:
        rows = protein[latent == source][:n]
        chosen[int(source)] = [maxima.protein_ids[i] for i in rows]
    return chosen
