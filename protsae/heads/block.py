"""Every head of one block in SAE features (one job of the workflow): OV and QK circuits between
SAE A (layer block - 1) and SAE B (layer block), roles, and their checks on real sequences."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from protsae.heads.behaviour import (
    block_codes,
    block_inputs,
    head_behaviour,
    post_norm_scales,
)
from protsae.heads.features import (
    CONSTANT,
    feature_inputs,
    output_encoder,
    ov_matrix,
    qk_matrix,
    sae_input_maps,
)
from protsae.heads.roles import head_role, offsets, role_masses
from protsae.heads.weights import block_attention
from protsae.networks.decoder import best_decoder_matches

log = logging.getLogger(__name__)


@dataclass
class BlockHeads:
    """heads: one row per head; profiles: (head, offset); ov: each source's strongest targets per
    head; qk: the strongest (query, key) latent pairs per head and offset (for absolute-position
    models per head only, offset empty: their QK has no offset term)."""

    heads: pd.DataFrame
    profiles: pd.DataFrame
    ov: pd.DataFrame
    qk: pd.DataFrame


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _largest(matrix: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of the ``n`` entries of largest magnitude (ties by position)."""
    flat = matrix.flatten().numpy()
    order = np.lexsort((np.arange(flat.size), -np.abs(flat)))[:n]
    rows, columns = np.unravel_index(order, matrix.shape)
    return rows, columns, flat[order]


def frequent_latents(batches, codes, n_latents: int, n: int) -> list[int]:
    """The ``n`` latents active in the most of the proteins of ``batches`` (`block_inputs`), from
    their codes (`block_codes`; ties: more active residues, then the lower index): the source
    latents whose OV rows and QK pairs are tabulated and checked."""
    proteins = torch.zeros(n_latents, dtype=torch.long)
    residues = torch.zeros(n_latents, dtype=torch.long)
    for (tokens, _), (values, indices) in zip(batches, codes):
        row = tokens.residue_mask.nonzero()[:, 0]  # the protein of each residue, in code order
        active = values > 0
        latent = indices[active].cpu()
        residues += torch.bincount(latent, minlength=n_latents)
        pairs = torch.unique(row[:, None].expand_as(indices)[active].cpu() * n_latents + latent)
        proteins += torch.bincount(pairs % n_latents, minlength=n_latents)
    order = np.lexsort((np.arange(n_latents), -residues.numpy(), -proteins.numpy()))
    return [int(latent) for latent in order[:n] if proteins[latent] > 0]


@torch.no_grad()
def analyse_block(model, block: int, sae_a, sae_b, sequences: Sequence[str], sources: Sequence[int] | int, *,
                  window: int = 8, ov_top: int = 5, qk_top: int = 5, min_share: float = 0.4,
                  copy_min: float = 0.5, copy_min_cosine: float = 0.5, max_tokens: int = 4096,
                  progress: bool = False) -> BlockHeads:
    """The heads of ``block`` read through ``sae_a`` (its input stream) and ``sae_b`` (its output).

    sources: A's latents whose OV rows and QK pairs are tabulated and checked, or how many of the
    most frequent ones to take (`frequent_latents`); the constant pseudo-feature is always in the
    QK tables, as latent -1."""
    device = sae_a.W_dec.device
    att = block_attention(model, block).to(device)
    batches = [(tokens, x.to(device)) for tokens, x in block_inputs(model, block, sequences, max_tokens,
                                                                    progress=progress)]
    codes = block_codes(sae_a, batches)
    if isinstance(sources, int):
        sources = frequent_latents(batches, codes, sae_a.cfg.n_latents, sources)
    sources = [int(s) for s in sources]
    source_index = torch.tensor(sources, dtype=torch.long, device=device)
    reference = torch.cat([x[tokens.residue_mask] for tokens, x in batches])
    inputs = feature_inputs(att, sae_a, reference)
    log.info("block %d: %d heads, %d residues; reference 1/sigma %.4g", block, att.n_heads, len(reference),
             inputs.inv_sigma)
    decoder_a, _, _ = sae_input_maps(sae_a)
    post_inv_sigma = post_norm_scales(model, block, batches)
    encoder_b = output_encoder(att, sae_input_maps(sae_b)[2], post_inv_sigma)
    behaviour = head_behaviour(att, codes, inputs, decoder_a, encoder_b, batches, sources, window=window,
                               progress=progress)
    matches = best_decoder_matches(decoder_a[source_index].cpu().numpy(), sae_b.W_dec.detach().float().cpu().numpy())
    match = matches["target"].to_numpy()
    matched = matches["cosine"].to_numpy() >= copy_min_cosine
    offs = offsets(window)

    head_rows, profile_rows, ov_rows, qk_rows = [], [], [], []
    for head in range(att.n_heads):
        ov = ov_matrix(att, head, inputs, encoder_b, source_index).cpu()  # (n_B, n_sources)
        per_unit = behaviour.ov_measured[head].T.float()  # (n_B, n_sources)
        seen = behaviour.ov_amount[head].numpy() > 0
        strongest = ov.argmax(0).numpy()
        copy_score = float(np.mean(matched & (strongest == match))) if sources else 0.0
        weights, measured_weights = [], []
        for s, latent in enumerate(sources):
            column = ov[:, s]
            top = np.lexsort((np.arange(len(column)), -np.abs(column.numpy())))[:ov_top]
            for rank, target in enumerate(top, start=1):
                measured = float(per_unit[target, s]) if seen[s] else float("nan")
                ov_rows.append({"block": block, "head": head, "source": latent, "target": int(target),
                                "rank": rank, "weight": float(column[target]), "measured": measured,
                                "is_match": bool(matched[s] and target == match[s])})
                if seen[s]:
                    weights.append(float(column[target]))
                    measured_weights.append(measured)
        weights, measured_weights = np.asarray(weights), np.asarray(measured_weights)
        slope = float(weights @ measured_weights / (weights @ weights)) if len(weights) and weights.any() \
            else float("nan")
        # Absolute positions: the content term alone, the same at every offset (one set of rows,
        # offset left empty).
        for offset in offs if att.rotary else [None]:
            qk = qk_matrix(att, head, inputs, offset or 0, source_index).cpu()
            labels = [*sources, CONSTANT]
            rows, columns, values = _largest(qk, qk_top)
            qk_rows += [{"block": block, "head": head, "offset": offset, "query": labels[r], "key": labels[c],
                         "score": float(v)} for r, c, v in zip(rows, columns, values)]
        predicted = behaviour.predicted[head].numpy()
        measured = behaviour.measured[head].numpy()
        profile_rows += [{"block": block, "head": head, "offset": d, "predicted": float(p), "measured": float(m),
                          "measured_raw": float(r)}
                         for d, p, m, r in zip(offs, predicted, measured, behaviour.measured_raw[head].numpy())]
        masses = role_masses(predicted, window)
        measured_masses = role_masses(measured, window)
        head_rows.append({
            "block": block, "head": head,
            "role": head_role(predicted, window, copy_score, min_share, copy_min),
            "measured_role": head_role(measured, window, copy_score, min_share, copy_min),
            **{f"predicted_{name}": value for name, value in masses.items()},
            **{f"measured_{name}": value for name, value in measured_masses.items()},
            "profile_r": _pearson(predicted, measured),
            "profile_tv": float(0.5 * np.abs(predicted - measured).sum()),
            "window_share": float(behaviour.measured_raw[head].sum()),
            "copy_score": copy_score,
            "ov_r": _pearson(weights, measured_weights),
            "ov_slope": slope,
            "inv_sigma": inputs.inv_sigma,
            "post_inv_sigma": ";".join(f"{scale:.6g}" for scale in post_inv_sigma),
            "n_queries": behaviour.n_queries,
        })
    return BlockHeads(pd.DataFrame(head_rows), pd.DataFrame(profile_rows), pd.DataFrame(ov_rows),
                      pd.DataFrame(qk_rows))
