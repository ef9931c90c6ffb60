"""Causal edges on a planted two-layer chain: latent a at layer 1 writes, through layer 2, the
input of latent b; the edge a -> b is found and is the strongest, and removing a latent that is
never active changes nothing."""

import numpy as np
import pytest
import torch

from protsae.models import STANDARD_RESIDUES, ProteinLM
from protsae.networks.causal import causal_effects, remove_latent
from protsae.sae.config import SAEConfig
from protsae.sae.variants import TopKSAE

D = 8


class ChainLM(ProteinLM):
    """Layer 0: a fixed non-negative embedding per residue (dims 0-7); layer 1: the same; layer 2:
    h1 + (h1 . e0) e5, so whatever sits on e0 at layer 1 is copied onto e5 at layer 2."""

    name, model_id, revision, d_model, n_layers, max_residues = "chain", "chain", "0", D, 2, 100
    alphabet = frozenset(STANDARD_RESIDUES)
    lm_objective = "masked"

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embedding = torch.rand(len(STANDARD_RESIDUES) + 2, D, generator=generator)

    def token_ids(self, sequence):
        return [0] + [2 + STANDARD_RESIDUES.index(c) for c in sequence] + [1]

    @property
    def pad_token_id(self):
        return 1

    def residue_class_ids(self, sequence):
        return [2 + STANDARD_RESIDUES.index(c) for c in sequence]

    @property
    def module(self):
        return torch.nn.Module()

    def _run(self, batch, capture, stop_after):
        h = self._apply(0, self.embedding[batch.input_ids], capture)
        h = self._apply(1, h.clone(), capture)
        if stop_after == 1:
            return None
        copy = torch.zeros(D)
        copy[5] = 1.0
        self._apply(2, h + h[..., :1] * copy, capture)
        return None


def basis_sae(dims, k):
    """A TopK SAE whose latent j reads and writes the basis direction dims[j]."""
    sae = TopKSAE(SAEConfig(d_model=D, n_latents=len(dims), k=k, seed=0))
    with torch.no_grad():
        for p in (sae.b_pre, sae.b_enc):
            p.zero_()
        basis = torch.eye(D)[list(dims)]
        sae.W_enc.copy_(basis)
        sae.W_dec.copy_(basis)
    return sae.eval()


def test_delta_removal_takes_out_only_that_latent():
    sae = basis_sae([0, 1, 2, 3], k=2)
    x = torch.tensor([[3.0, 2.0, 0.5, 0.1, 7, 7, 7, 7]])
    edited, activation = remove_latent(sae, x, 0)
    assert activation.tolist() == [3.0]
    assert torch.allclose(edited, torch.tensor([[0.0, 2.0, 0.5, 0.1, 7, 7, 7, 7]]))
    unchanged, none = remove_latent(sae, x, 3)  # not kept (k = 2): nothing to remove
    assert torch.equal(unchanged, x) and none.tolist() == [0.0]


def test_the_planted_chain_is_the_strongest_causal_edge():
    model = ChainLM()
    source = basis_sae([0, 1, 2, 3], k=4)  # layer 1: latent 0 reads e0
    target = basis_sae([4, 5, 6, 7], k=4)  # layer 2: latent 1 reads e5, which copies e0
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list(STANDARD_RESIDUES), 30)) for _ in range(6)]
    edges = causal_effects(model, source, 1, target, 2, sequences, sources=[0, 1], max_tokens=64)
    top = edges.iloc[0]
    assert (top["source"], top["target"]) == (0, 1) and top["effect"] > 0
    # Latent 0's activation is e0's value, which layer 2 adds to e5: the drop equals it on average.
    h1 = model.embedding[[2 + STANDARD_RESIDUES.index(c) for s in sequences for c in s]]
    assert top["effect"] == pytest.approx(float(h1[:, 0].mean()), rel=1e-5)
    assert top["n_active"] == 180
    # Latent 1 (e1) reaches nothing at layer 2 but its own copy, which no target latent reads.
    assert edges[edges["source"] == 1].empty
    with pytest.raises(ValueError, match="must come after"):
        causal_effects(model, source, 2, target, 1, sequences, sources=[0])
