"""Every edge between two SAEs of a layer sweep (one job of the workflow): co-activation over a
sample of evaluation proteins, decoder best matches, and causal edges from chosen sources over
each source's top proteins (METHODS.md section 11). Within one layer only co-activation applies."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from protsae.networks.causal import causal_effects
from protsae.networks.coactivation import count_over_model
from protsae.networks.decoder import best_decoder_matches
from protsae.networks.graph import (
    EDGE_COLUMNS,
    edge_rows,
    top_per_source,
)

log = logging.getLogger(__name__)


def sample_ids(ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A seeded draw of ``n`` of ``ids`` (all when ``n`` is None or not smaller), in their order."""
    if n is None or n >= len(ids):
        return list(ids)
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    return [ids[i] for i in keep]


def pair_edges(model, source_sae, source_layer: int, target_sae, target_layer: int, sequences: Mapping[str, str],
               coactivation_ids: Sequence[str], sources: Mapping[int, Sequence[str]], *, min_both: int = 5,
               coactivation_top: int | None = 20, causal_top: int = 20, max_tokens: int = 8192,
               storage_dtype: str | None = None,
               progress: bool = False) -> pd.DataFrame:
    """The edge table (`EDGE_COLUMNS`) between the latents of ``source_sae`` at ``source_layer``
    and ``target_sae`` at ``target_layer`` (>=; equal: one SAE, co-activation of its pairs only).

    coactivation_ids: the proteins of ``sequences`` whose residues are counted. sources: causal
    source latent -> the proteins it is removed from (a source with none is skipped); each source
    keeps its ``causal_top`` targets of largest |effect|, and each latent its ``coactivation_top``
    partners of highest NPMI (None: every pair with ``min_both`` co-occurrences; with 32 of 2,048
    latents active per residue that is millions of pairs)."""
    if target_layer < source_layer:
        raise ValueError(f"the target layer ({target_layer}) comes before the source layer ({source_layer})")
    same = source_layer == target_layer
    counts = count_over_model(model, source_sae, source_layer, target_sae, target_layer,
                              [sequences[i] for i in coactivation_ids], max_tokens=max_tokens,
                              storage_dtype=storage_dtype, progress=progress)
    log.info("co-activation: %d residues of %d proteins", counts.n_residues, len(coactivation_ids))
    coactivation = counts.edges(min_both)
    if coactivation_top is not None:
        coactivation = top_per_source(coactivation, coactivation_top, by="npmi", absolute=False)
    tables = [edge_rows("coactivation", source_layer, target_layer, coactivation, "npmi")]
    if not same:
        decoder = best_decoder_matches(source_sae.W_dec.detach().float().cpu().numpy(),
                                       target_sae.W_dec.detach().float().cpu().numpy())
        tables.append(edge_rows("decoder", source_layer, target_layer, decoder, "cosine"))
        effects = []
        for latent, proteins in tqdm(sources.items(), desc="causal", unit="source", disable=not progress,
                                     mininterval=2.0):
            if not proteins:
                log.info("source %d never fires on the evaluation set: no causal edges", latent)
                continue
            table = causal_effects(model, source_sae, source_layer, target_sae, target_layer,
                                   [sequences[i] for i in proteins], [latent], max_tokens=max_tokens)
            effects.append(top_per_source(table, causal_top, by="effect"))
        if effects:
            causal = pd.concat(effects, ignore_index=True)
            tables.append(edge_rows("causal", source_layer, target_layer, causal, "effect"))
    return pd.concat(tables, ignore_index=True)[list(EDGE_COLUMNS)]
