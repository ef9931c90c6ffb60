"""Causal edges (METHODS.md section 11): remove source latent a of the layer-s SAE in delta form
(h' = h - (decode(z) - decode(z without a)): only a's contribution goes, the SAE's error term
stays), run the model on to layer t, encode with the layer-t SAE; the edge a -> b is the mean drop
of latent b's activation, clean minus ablated, over the residues where a was active (positive:
a drives b; negative: a suppresses it). One forward pass per source latent and batch; the sources
are chosen by the caller (family-specific latents, the probes' top latents), not all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from protsae.activations.batches import token_budget_batches
from protsae.codes.encode import sae_placement


def _dense_codes(sae, x: torch.Tensor) -> torch.Tensor:
    """(n, n_latents) float32 activations of the latents ``sae`` keeps on ``x`` (others 0)."""
    vals, idx = sae.encode(x)
    dense = torch.zeros(x.shape[0], sae.cfg.n_latents, dtype=torch.float32, device=x.device)
    return dense.scatter_add_(1, idx, vals.float())


def _decode(sae, vals, idx, x):
    if getattr(sae.cfg, "standardize_tokens", False):
        return sae.decode(vals, idx, x=x)
    return sae.decode(vals, idx)


def remove_latent(sae, x: torch.Tensor, latent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (n, d_model) with ``latent``'s contribution removed in delta form, and the latent's
    activation on each row (n,) (0 where the SAE does not keep it)."""
    vals, idx = sae.encode(x)
    mine = (idx == latent) & (vals > 0)
    without = torch.where(mine, torch.zeros_like(vals), vals)
    contribution = _decode(sae, vals, idx, x) - _decode(sae, without, idx, x)
    return x - contribution.to(x.dtype), (vals * mine).sum(-1)


@torch.no_grad()
def causal_effects(model, source_sae, source_layer: int, target_sae, target_layer: int,
                   sequences: Sequence[str], sources: Sequence[int], max_tokens: int = 8192) -> pd.DataFrame:
    """Mean effect of each of ``sources`` (latents of ``source_sae`` at ``source_layer``) on every
    latent of ``target_sae`` at ``target_layer`` (> source_layer) over ``sequences``: one row per
    (source, target) with a non-zero effect, columns source, target, effect, n_active (residues
    where the source was active), sorted by |effect|, largest first."""
    if target_layer <= source_layer:
        raise ValueError(f"the target layer ({target_layer}) must come after the source layer ({source_layer})")
    device, dtype = sae_placement(source_sae)
    n_target = target_sae.cfg.n_latents
    totals = {latent: torch.zeros(n_target, dtype=torch.float64) for latent in sources}
    counts = dict.fromkeys(sources, 0)
    for batch_index in token_budget_batches([len(s) for s in sequences], max_tokens):
        tokens = model.tokenize([sequences[i] for i in batch_index])
        mask = tokens.residue_mask
        hidden = model.hidden_states(tokens, [source_layer, target_layer])
        x_source = hidden[source_layer][mask].to(device=device or hidden[source_layer].device, dtype=dtype)
        clean = _dense_codes(target_sae, hidden[target_layer][mask].to(x_source.device, dtype))
        for latent in sources:
            edited, activation = remove_latent(source_sae, x_source, latent)
            active = activation > 0
            if not active.any():
                continue

            # The layers above the source resume from its output with the latent removed.
            output = hidden[source_layer].clone()
            output[mask] = edited.to(device=output.device, dtype=output.dtype)
            ablated_hidden = model.hidden_states_from(source_layer, output, tokens, [target_layer])[target_layer]
            ablated = _dense_codes(target_sae, ablated_hidden[mask].to(x_source.device, dtype))
            totals[latent] += (clean - ablated)[active].sum(0).double().cpu()
            counts[latent] += int(active.sum())
    rows = []
    for latent in sources:
        if counts[latent] == 0:
            continue
        effect = (totals[latent] / counts[latent]).numpy()
        targets = np.flatnonzero(effect)
        rows.append(pd.DataFrame({"source": latent, "target": targets, "effect": effect[targets],
                                  "n_active": counts[latent]}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["source", "target", "effect", "n_active"])
    order = np.lexsort((table["target"].to_numpy(), table["source"].to_numpy(), -np.abs(table["effect"].to_numpy(float))))
    return table.iloc[order].reset_index(drop=True)
