"""Clamp one SAE latent inside the language model and read out what it predicts (METHODS.md
section 8).

At the SAE's layer, each residue's activation ``h`` is encoded to pre-activations ``z_pre``; the
latent is set to ``value`` in a copy of them (never in place, so every multiplier starts from the
model's own values); the SAE's own selection then picks the kept latents ``z'`` of the clamped
copy, and the residue's activation becomes ``h + decode(z') - decode(z)``, which equals
``decode(z') + (h - decode(z))``: the SAE's error term is kept, and a clamp that leaves the kept
latents unchanged leaves ``h`` exactly as it was. The edit is `ProteinLM.replace_layer_output`,
the mechanism the splice evaluation uses, so the layers above the SAE's own layer (and the LM
head) read it, whichever layer that is (InterProt's code resumed at a fixed layer).

Read-out: a masked LM (ESM-2) predicts residue i at its own column in one forward pass over the
unmasked sequence; a next-residue LM (UniRep) predicts residue i from the state before it,
teacher-forced on the original sequence, and residue 0 keeps its letter. Both take the argmax over
the 20 standard residues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protsae.codes.encode import sae_placement
from protsae.models import STANDARD_RESIDUES, LayerEdit, ProteinLM, TokenBatch


@dataclass(frozen=True)
class Clamp:
    """Set ``latent``'s pre-activation to ``value`` at every residue, or (``only_where_active``,
    InterProt's "part" mode) only where the unclamped SAE keeps it with a positive value."""

    latent: int
    value: float
    only_where_active: bool = False


def _decode(sae, vals: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # InterProt's SAEs standardise each token, so their decode needs the input too.
    if getattr(getattr(sae, "cfg", None), "standardize_tokens", False):
        return sae.decode(vals, idx, x=x)
    return sae.decode(vals, idx)


def sae_codes(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre-activations, kept values, kept indices) of ``x`` under ``sae``: what `steer_rows`
    clamps, computed once for several clamps of the same rows."""
    with torch.no_grad():
        pre = sae.pre_acts(x)
        return (pre, *sae.select(pre))


def steer_rows(sae, x: torch.Tensor, clamp: Clamp | None, codes: tuple | None = None) -> torch.Tensor:
    """Activations ``(n, d_model)`` with ``clamp`` applied through ``sae`` (the delta form);
    ``x`` itself is not modified. ``clamp=None`` returns a copy of ``x``. ``codes``: `sae_codes`
    of ``x`` when already at hand."""
    if clamp is None:
        return x.clone()
    n_latents = sae.W_dec.shape[0]
    if not 0 <= clamp.latent < n_latents:
        raise ValueError(f"latent {clamp.latent} is out of range: the SAE has {n_latents} latents")
    with torch.no_grad():
        pre, vals, idx = codes if codes is not None else sae_codes(sae, x)
        clamped = pre.clone()
        if clamp.only_where_active:
            rows = ((idx == clamp.latent) & (vals > 0)).any(-1)
            clamped[rows, clamp.latent] = clamp.value
        else:
            clamped[:, clamp.latent] = clamp.value
        new_vals, new_idx = sae.select(clamped)
        # Rows whose kept latents did not change keep their activation exactly (the two decodes
        # could differ in the last bit, as top-k may order the same slots differently).
        changed = _codes_differ(vals, idx, new_vals, new_idx)
        out = x.clone()
        rows = x[changed]
        out[changed] = rows + (_decode(sae, new_vals[changed], new_idx[changed], rows)
                               - _decode(sae, vals[changed], idx[changed], rows))
        return out


def _codes_differ(vals, idx, new_vals, new_idx) -> torch.Tensor:
    """(n,) bool: whether the kept (non-zero) latents or their values differ, in any slot order."""
    def canonical(v, i):
        i = torch.where(v > 0, i, -1)
        i, order = i.sort(-1)
        return i, torch.where(i >= 0, v.gather(-1, order), 0)

    (a_idx, a_val), (b_idx, b_val) = canonical(vals, idx), canonical(new_vals, new_idx)
    return (a_idx != b_idx).any(-1) | (a_val != b_val).any(-1)


def steering_edit(sae, residue_mask: torch.Tensor, clamp: Clamp | None) -> LayerEdit:
    """A layer edit applying ``clamp`` at the residue positions of one batch (specials and padding
    keep the layer's own output), on the SAE's device and dtype."""
    sae_device, sae_dtype = sae_placement(sae)

    def edit(output: torch.Tensor) -> torch.Tensor:
        x = output[residue_mask].to(device=sae_device or output.device, dtype=sae_dtype)
        rows = steer_rows(sae, x, clamp)
        edited = output.clone()
        edited[residue_mask] = rows.to(device=output.device, dtype=output.dtype)
        return edited

    return edit


@dataclass
class Readout:
    """What the LM predicts for one sequence: the argmax residue at every position and the
    log-probability (over the 20 standard residues) of every standard residue there."""

    sequence: str
    log_probs: torch.Tensor
    """(length, 20) float32, columns in `STANDARD_RESIDUES` order."""

    def log_prob_of(self, residues: str) -> torch.Tensor:
        """(length,) log-probability of ``residues[i]`` at position i (nan for a non-standard letter)."""
        out = torch.full((len(residues),), float("nan"))
        for i, letter in enumerate(residues):
            column = STANDARD_RESIDUES.find(letter)
            if column >= 0:
                out[i] = self.log_probs[i, column]
        return out


def read_out(model: ProteinLM, sequences: Sequence[str], sae=None, layer: int | None = None,
             clamp: Clamp | None = None) -> list[Readout]:
    """The model's read-out of ``sequences`` (one batch), with ``clamp`` applied through ``sae``
    at ``layer`` when given."""
    if clamp is not None and (sae is None or layer is None):
        raise ValueError("a clamp needs the SAE and its layer")
    batch = model.tokenize(list(sequences))
    with torch.no_grad():
        if clamp is None:
            logits = model.logits(batch)
        else:
            with model.replace_layer_output(layer, steering_edit(sae, batch.residue_mask, clamp)):
                logits = model.logits(batch)
    return _readouts(model, sequences, logits)


def read_out_clamped(model: ProteinLM, sequences: Sequence[str], sae, layer: int,
                     clamps: Sequence[Sequence[Clamp | None]], max_tokens: int = 8192) -> list[list[Readout]]:
    """Each sequence's read-out under each of its ``clamps`` (``clamps[i]`` for sequence i; None:
    unclamped).

    The same read-outs as `read_out` of each (sequence, clamp) pair, up to the last bits that
    batch shapes may move, at a fraction of the cost: the layers up to ``layer`` run once over
    ``sequences`` (one batch), the SAE encodes each sequence once for all its clamps, and the
    layers above run over the pairs in batches of at most ``max_tokens`` padded tokens
    (`ProteinLM.logits_from`: only those layers, where the model can resume there)."""
    if len(clamps) != len(sequences):
        raise ValueError(f"{len(clamps)} lists of clamps for {len(sequences)} sequences")
    batch = model.tokenize(list(sequences))
    hidden = model.hidden_states(batch, [layer])[layer]
    sae_device, sae_dtype = sae_placement(sae)
    pairs = [(i, clamp) for i, own in enumerate(clamps) for clamp in own]
    per_batch = max(1, max_tokens // batch.input_ids.shape[1])
    readouts: list[Readout] = []
    encoded = (None, None, None)  # (sequence index, its residue rows, their codes): pairs come in order
    for start in range(0, len(pairs), per_batch):
        chunk = pairs[start:start + per_batch]
        rows = torch.tensor([i for i, _ in chunk], device=batch.input_ids.device)
        edited = hidden[rows].clone()
        for row, (i, clamp) in enumerate(chunk):
            if encoded[0] != i:
                x = hidden[i, batch.residue_mask[i]].to(device=sae_device or hidden.device, dtype=sae_dtype)
                encoded = (i, x, sae_codes(sae, x) if any(c is not None for c in clamps[i]) else None)
            steered = steer_rows(sae, encoded[1], clamp, encoded[2])
            edited[row, batch.residue_mask[i]] = steered.to(device=hidden.device, dtype=hidden.dtype)
        sub = TokenBatch(batch.input_ids[rows], batch.attention_mask[rows], batch.residue_mask[rows],
                         [batch.lengths[i] for i, _ in chunk])
        readouts += _readouts(model, [sequences[i] for i, _ in chunk], model.logits_from(layer, edited, sub))
    grouped, position = [], 0
    for own in clamps:
        grouped.append(readouts[position:position + len(own)])
        position += len(own)
    return grouped


def _readouts(model: ProteinLM, sequences: Sequence[str], logits: torch.Tensor) -> list[Readout]:
    """Argmax letters and standard-residue log-probabilities of each row of ``logits``."""
    standard = torch.tensor(model.residue_class_ids(STANDARD_RESIDUES), device=logits.device)
    log_probs = logits[..., standard].float().log_softmax(-1).cpu()
    shift = 1 if model.lm_objective == "masked" else 0
    readouts = []
    for row, seq in enumerate(sequences):
        rows = log_probs[row, shift : shift + len(seq)]
        letters = [STANDARD_RESIDUES[j] for j in rows.argmax(-1).tolist()]
        if model.lm_objective != "masked" and seq:
            letters[0] = seq[0]  # nothing before it to predict it from
        readouts.append(Readout("".join(letters), rows))
    return readouts
