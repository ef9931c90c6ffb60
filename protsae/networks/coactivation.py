"""Co-activation edges (METHODS.md section 11): on the same residue, how often latent a (SAE at
layer s) and latent b (SAE at layer t) are both active, from the sparse codes alone.

With n residues, n_a and n_b the residues where each is active and n_ab those where both are:
normalised PMI = log(p_ab / (p_a p_b)) / -log(p_ab) (1 when a and b always fire together, 0
when independent, -1 as they never meet; InterPLM's and Markov Bio's weight), and Jaccard =
n_ab / (n_a + n_b - n_ab). The counts come from one sparse product of the two residues x latents
binary code matrices, A.T @ B, never a dense matrix; pairs with n_ab below a minimum are dropped.
Within one SAE the pairs are a < b.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import csr_array, triu
from tqdm import tqdm

EDGE_COLUMNS = ("source", "target", "n_source", "n_target", "n_both", "npmi", "jaccard")


def active_matrix(idx: np.ndarray, val: np.ndarray, n_latents: int) -> csr_array:
    """(residues, n_latents) 0/1 CSR of the latents active (val > 0) on each residue, from codes
    (idx, val: (n, k))."""
    n, k = idx.shape
    active = val > 0
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(active.sum(1), out=indptr[1:])
    latents = idx[active].astype(np.int64)
    if latents.size and (latents.min() < 0 or latents.max() >= n_latents):
        raise ValueError(f"a latent index outside [0, {n_latents})")
    matrix = csr_array((np.ones(len(latents), np.int64), latents, indptr), shape=(n, n_latents))
    matrix.sum_duplicates()
    matrix.data[:] = 1  # a latent listed twice on one residue is active once
    return matrix


class CoactivationCounts:
    """Running co-activation counts of two SAEs' latents over the same residues (``same``: one SAE
    with itself). Feed row-aligned batches of both SAEs' codes with `add`; read `edges`."""

    def __init__(self, n_source: int, n_target: int, same: bool = False):
        if same and n_source != n_target:
            raise ValueError("one SAE with itself: n_source must equal n_target")
        self.n_source, self.n_target, self.same = n_source, n_target, same
        self.n_residues = 0
        self.source_counts = np.zeros(n_source, np.int64)
        self.target_counts = np.zeros(n_target, np.int64)
        self.both = csr_array((n_source, n_target), dtype=np.int64)

    def add(self, source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One batch: ``source`` and ``target`` the (idx, val) codes of the same residues, in the
        same order, under the two SAEs (``target`` omitted for one SAE with itself)."""
        a = active_matrix(*source, self.n_source)
        b = a if target is None else active_matrix(*target, self.n_target)
        if target is None and not self.same:
            raise ValueError("two SAEs: pass the target SAE's codes of the same residues")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{a.shape[0]} source rows but {b.shape[0]} target rows: the codes are not of the same residues")
        self.n_residues += a.shape[0]
        self.source_counts += np.asarray(a.sum(axis=0)).ravel()
        self.target_counts += np.asarray(b.sum(axis=0)).ravel()
        self.both = self.both + (a.T @ b)

    def edges(self, min_both: int = 5) -> pd.DataFrame:
        """One row per pair with n_both >= ``min_both`` (within one SAE: source < target), sorted
        by NPMI, largest first (ties: source, target)."""
        both = triu(self.both, k=1, format="coo") if self.same else self.both.tocoo()
        keep = both.data >= min_both
        source, target, n_both = both.row[keep].astype(np.int64), both.col[keep].astype(np.int64), both.data[keep]
        n_source, n_target = self.source_counts[source], self.target_counts[target]
        n = max(self.n_residues, 1)
        p_both, p_source, p_target = n_both / n, n_source / n, n_target / n
        with np.errstate(divide="ignore", invalid="ignore"):
            pmi = np.log(p_both / (p_source * p_target))
            npmi = np.where(p_both < 1, pmi / -np.log(p_both), 1.0)
        table = pd.DataFrame({"source": source, "target": target, "n_source": n_source, "n_target": n_target,
                              "n_both": n_both, "npmi": npmi, "jaccard": n_both / (n_source + n_target - n_both)})
        return table.sort_values(["npmi", "source", "target"], ascending=[False, True, True],
                                 kind="stable").reset_index(drop=True)


def count_over_model(model, source_sae, source_layer: int, target_sae, target_layer: int,
                     sequences: Sequence[str], max_tokens: int = 8192, storage_dtype: str | None = None,
                     progress: bool = False) -> CoactivationCounts:
    """Co-activation counts of two SAEs' latents (``source_layer == target_layer``: one SAE with
    itself, pass it twice) over every residue of ``sequences``, the model run once over them.
    With ``storage_dtype`` activations are rounded to the cache's dtype first, as the codes of a
    cache would be; nothing dense outlives its batch."""
    import torch

    from protsae.activations.batches import token_budget_batches
    from protsae.codes.encode import encode_rows

    same = source_layer == target_layer
    if same and source_sae is not target_sae:
        raise ValueError(f"layer {source_layer} with itself: pass the same SAE twice")
    counts = CoactivationCounts(source_sae.cfg.n_latents, target_sae.cfg.n_latents, same=same)
    rounding = getattr(torch, storage_dtype) if storage_dtype else None
    layers = sorted({source_layer, target_layer})
    batches = list(token_budget_batches([len(s) for s in sequences], max_tokens))
    with torch.no_grad():
        for batch in tqdm(batches, desc="co-activation", unit="batch", disable=not progress, mininterval=2.0):
            tokens = model.tokenize([sequences[i] for i in batch])
            hidden = model.hidden_states(tokens, layers)
            x = {layer: hidden[layer][tokens.residue_mask] for layer in layers}
            if rounding is not None:
                x = {layer: value.to(rounding).float() for layer, value in x.items()}
            source = encode_rows(source_sae, x[source_layer])
            target = None if same else encode_rows(target_sae, x[target_layer])
            counts.add(source, target)
    return counts
