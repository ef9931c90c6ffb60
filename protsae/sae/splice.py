"""How much of the language model an SAE keeps: delta CE, loss recovered and KL recovered
(METHODS.md section 3; SAEBench's core metrics).

The SAE's reconstruction is spliced back into the model at its layer, on residue positions only
(the SAE never saw a special or padding token), and the LM loss, and the output distribution at
the positions the loss scores, are compared with the clean model and with zero-ablation of the
same positions:

    delta_ce       = CE(sae) - CE(clean)
    loss_recovered = (CE(zero) - CE(sae)) / (CE(zero) - CE(clean))
    kl_recovered   = 1 - KL(clean || sae) / KL(clean || zero)      (SAEBench's KL score)

A masked LM (ESM-2) is scored on a seeded set of masked residues per sequence, a next-residue LM
(UniRep) on every residue. ``sae_plus_error`` splices x_hat + (x - x_hat), which must give the
clean loss: a check that the splice itself changes nothing.
"""

from __future__ import annotations

import os
import zlib
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from protsae.activations.batches import token_budget_batches
from protsae.activations.stream import is_heldout
from protsae.codes.encode import sae_placement
from protsae.models import LayerEdit, ProteinLM, TokenBatch
from protsae.sae.quality import kl_recovered, token_kl_divergence
from protsae.sequences.fasta import read_fasta

CONDITIONS = ("clean", "sae", "sae_plus_error", "zero")
"""What the layers above read at residue positions: the layer's own output, the SAE's
reconstruction, reconstruction plus error (= the output, up to rounding), or zeros."""

IGNORE_INDEX = -100


def mask_positions(seq_id: str, length: int, mask_prob: float, seed: int) -> np.ndarray:
    """Residue positions (0-based, sorted, int64) hidden from a masked LM for one sequence.

    ``max(1, round(mask_prob * length))`` positions drawn without replacement by a generator
    seeded with (seed, crc32(seq_id)), so the choice never depends on batching.
    """
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    n_masked = min(length, max(1, int(round(mask_prob * length))))
    rng = np.random.default_rng([seed, zlib.crc32(seq_id.encode())])
    return np.sort(rng.choice(length, size=n_masked, replace=False)).astype(np.int64)


class _ReconstructionStats:
    """Running sums for the FVU and L0 of the SAE over every spliced residue (float64)."""

    def __init__(self) -> None:
        self.n_rows = 0
        self.squared_error = 0.0
        self.sum_x: torch.Tensor | float = 0.0
        self.sum_x2: torch.Tensor | float = 0.0
        self.n_active = 0.0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, vals: torch.Tensor) -> None:
        x = x.double()
        self.n_rows += x.shape[0]
        self.squared_error = self.squared_error + (x - x_hat.double()).pow(2).sum()
        self.sum_x = self.sum_x + x.sum(0)
        self.sum_x2 = self.sum_x2 + x.pow(2).sum(0)
        self.n_active = self.n_active + (vals > 0).sum()

    def result(self) -> dict:
        if self.n_rows == 0:
            return {"fvu": float("nan"), "l0": float("nan"), "n_residues": 0}
        total_variance = float((self.sum_x2 - self.sum_x.pow(2) / self.n_rows).sum())
        return {
            "fvu": float(self.squared_error) / max(total_variance, np.finfo(np.float64).tiny),
            "l0": float(self.n_active) / self.n_rows,
            "n_residues": self.n_rows,
        }


def residue_edit(condition: str, sae, residue_mask: torch.Tensor,
                 stats: _ReconstructionStats | None = None) -> LayerEdit:
    """A layer edit that rewrites the residue positions of one batch.

    condition: "sae", "sae_plus_error" or "zero" (see `CONDITIONS`). residue_mask: (batch, tokens)
    bool of the batch being run. Special and padding positions keep the layer's own output.
    The SAE runs on float32 (or its own dtype) copies of the residue rows, on its own device.
    """
    if condition not in CONDITIONS[1:]:
        raise ValueError(f"condition must be one of {CONDITIONS[1:]}; got {condition!r}")
    sae_device, sae_dtype = sae_placement(sae)

    def edit(output: torch.Tensor) -> torch.Tensor:
        x = output[residue_mask].float()  # (n_residues, d_model), row-major over the batch
        if condition == "zero":
            rows = torch.zeros_like(x)
        else:
            x_sae = x.to(device=sae_device or x.device, dtype=sae_dtype)
            vals, idx = sae.encode(x_sae)
            # InterProt's SAEs standardise each token, so their decode needs the input too.
            needs_input = getattr(getattr(sae, "cfg", None), "standardize_tokens", False)
            x_hat = (sae.decode(vals, idx, x=x_sae) if needs_input else sae.decode(vals, idx))
            x_hat = x_hat.to(device=x.device, dtype=torch.float32)
            rows = x_hat + (x - x_hat) if condition == "sae_plus_error" else x_hat
            if stats is not None:
                stats.add(x, x_hat, vals)
        edited = output.clone()
        edited[residue_mask] = rows.to(output.dtype)
        return edited

    return edit


def _masked_inputs(model: ProteinLM, ids: Sequence[str], seqs: Sequence[str], mask_prob: float,
                   seed: int) -> tuple[TokenBatch, torch.Tensor]:
    """The batch to run and its LM targets (batch, tokens), IGNORE_INDEX where nothing is scored."""
    batch = model.tokenize(seqs)
    targets = model.lm_targets(seqs, batch)
    if model.lm_objective == "next_residue":
        return batch, targets
    if model.lm_objective != "masked":
        raise ValueError(f"unknown lm_objective {model.lm_objective!r}")
    if model.mask_token_id is None:
        raise ValueError(f"{model.name} is a masked LM without a mask token")
    masked = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    for row, (seq_id, seq) in enumerate(zip(ids, seqs)):
        # Residue i sits in column i + 1, where a masked LM also predicts it.
        masked[row, torch.from_numpy(mask_positions(seq_id, len(seq), mask_prob, seed) + 1)] = True
    masked = masked.to(batch.input_ids.device)
    input_ids = batch.input_ids.masked_fill(masked, model.mask_token_id)
    batch = TokenBatch(input_ids, batch.attention_mask, batch.residue_mask, batch.lengths)
    return batch, targets.masked_fill(~masked, IGNORE_INDEX)


def _summed_ce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                                 reduction="sum"))


@torch.no_grad()
def splice_metrics(
    model: ProteinLM,
    sae,
    layer: int,
    sequences: Sequence[tuple[str, str]],
    *,
    mask_prob: float = 0.15,
    seed: int = 0,
    max_tokens: int = 8192,
    progress: bool = False,
) -> dict:
    """LM loss with the SAE spliced in at ``layer``, against the clean model and zero-ablation.

    sequences: (seq_id, residues) pairs, e.g. from `heldout_sequences`. Every batch (token budget
    ``max_tokens`` over length-sorted sequences) runs once clean, keeping the layer's output, and
    once more per other condition of `CONDITIONS` from that output edited, on the same inputs
    (`ProteinLM.logits_from`: only the layers above ``layer`` where the model can resume there).
    For a masked LM the inputs have `mask_positions` replaced by the mask token and only those
    positions are scored; the SAE then reads (and fvu/l0 describe) the layer's activations of
    that masked input, the ones the loss depends on.

    Returns ce_clean, ce_sae, ce_sae_plus_error, ce_zero (mean nats per predicted token),
    delta_ce, delta_ce_with_error, loss_recovered, kl_sae, kl_sae_plus_error, kl_zero (mean KL
    divergence of each condition's output distribution from the clean one at the predicted
    positions, nats; `protsae.sae.quality.token_kl_divergence`), kl_recovered
    (`protsae.sae.quality.kl_recovered`), fvu and l0 of the SAE on the spliced residue
    activations, n_sequences, n_predicted_tokens, n_residues, layer, lm_objective, mask_prob
    (None for a next-residue LM) and seed.
    """
    if not sequences:
        raise ValueError("no sequences to evaluate")
    lengths = [len(seq) for _, seq in sequences]
    batches = token_budget_batches(lengths, max_tokens, specials=len(model.token_ids("")))
    ce_sums = dict.fromkeys(CONDITIONS, 0.0)
    kl_sums = dict.fromkeys(CONDITIONS[1:], 0.0)
    n_predicted = 0
    stats = _ReconstructionStats()
    bar = tqdm(total=sum(lengths), unit="res", unit_scale=True, desc="splicing", disable=not progress,
               mininterval=2.0)
    for index_batch in batches:
        ids = [sequences[i][0] for i in index_batch]
        seqs = [sequences[i][1] for i in index_batch]
        batch, targets = _masked_inputs(model, ids, seqs, mask_prob, seed)
        n_predicted += int((targets != IGNORE_INDEX).sum())
        # The clean pass keeps the layer's output; each condition resumes from its edited copy,
        # so the layers below run once (the same numbers as a whole edited forward pass).
        clean_logits, output = model.logits_and_hidden(batch, layer)
        scored = (targets != IGNORE_INDEX).to(clean_logits.device)
        ce_sums["clean"] += _summed_ce(clean_logits, targets)
        clean_scored = clean_logits[scored]
        for condition in CONDITIONS[1:]:
            edit = residue_edit(condition, sae, batch.residue_mask, stats if condition == "sae" else None)
            logits = model.logits_from(layer, edit(output).to(output.dtype), batch)
            ce_sums[condition] += _summed_ce(logits, targets)
            kl_sums[condition] += float(token_kl_divergence(clean_scored, logits[scored]).sum())
        bar.update(sum(len(s) for s in seqs))
    bar.close()

    ce = {condition: total / max(n_predicted, 1) for condition, total in ce_sums.items()}
    kl = {condition: total / max(n_predicted, 1) for condition, total in kl_sums.items()}
    recon = stats.result()
    ablation_gap = ce["zero"] - ce["clean"]
    return {
        "ce_clean": ce["clean"],
        "ce_sae": ce["sae"],
        "ce_sae_plus_error": ce["sae_plus_error"],
        "ce_zero": ce["zero"],
        "delta_ce": ce["sae"] - ce["clean"],
        "delta_ce_with_error": ce["sae_plus_error"] - ce["clean"],
        "loss_recovered": (ce["zero"] - ce["sae"]) / ablation_gap if ablation_gap != 0 else float("nan"),
        "kl_sae": kl["sae"],
        "kl_sae_plus_error": kl["sae_plus_error"],
        "kl_zero": kl["zero"],
        "kl_recovered": kl_recovered(kl["sae"], kl["zero"]),
        "fvu": recon["fvu"],
        "l0": recon["l0"],
        "n_sequences": len(sequences),
        "n_predicted_tokens": n_predicted,
        "n_residues": recon["n_residues"],
        "layer": layer,
        "lm_objective": model.lm_objective,
        "mask_prob": mask_prob if model.lm_objective == "masked" else None,
        "seed": seed,
    }


def heldout_sequences(
    fasta_or_pairs: str | os.PathLike | Iterable[tuple[str, str]],
    holdout_fraction: float,
    seed: int,
    n_max: int | None = None,
    max_length: int | None = None,
    chunk: int = 4096,
) -> list[tuple[str, str]]:
    """The first ``n_max`` sequences, in file order, of the SAE's held-out split.

    Uses `protsae.data.is_heldout` with the SAE's ``holdout_fraction`` and split ``seed``, so the
    sequences are exactly those whose activations training never read. Sequences longer than
    ``max_length`` residues are skipped first. A FASTA is streamed and reading stops once
    ``n_max`` sequences are found.
    """
    if isinstance(fasta_or_pairs, (str, os.PathLike)):
        pairs: Iterable[tuple[str, str]] = ((r.seq_id, r.sequence) for r in read_fasta(fasta_or_pairs))
    else:
        pairs = fasta_or_pairs
    chosen: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = []

    def take() -> bool:
        """Move the held-out pairs of ``pending`` to ``chosen``; True once ``n_max`` are chosen."""
        if pending:
            held = is_heldout(pa.array([seq_id for seq_id, _ in pending], pa.string()), holdout_fraction, seed)
            chosen.extend(pair for pair, keep in zip(pending, held) if keep)
            pending.clear()
        return n_max is not None and len(chosen) >= n_max

    for seq_id, seq in pairs:
        if max_length is not None and len(seq) > max_length:
            continue
        pending.append((seq_id, seq))
        if len(pending) >= chunk and take():
            break
    else:
        take()
    return chosen[:n_max] if n_max is not None else chosen
