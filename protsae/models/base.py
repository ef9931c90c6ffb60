"""One interface over the protein language models protsae reads.

Every adapter turns residue strings into a `TokenBatch` whose column ``i + 1`` holds residue ``i``
(column 0 is the BOS/CLS or UniRep start token), returns hidden states of the requested layers
(layer 0 = embeddings, layer l = output of block l, as in Hugging Face ``output_hidden_states``),
and lets a caller replace one layer's output as the layers above read it.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch

LayerEdit = Callable[[torch.Tensor], torch.Tensor]
"""Maps a layer's output ``(batch, tokens, d_model)`` to the tensor the layers above read."""

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@dataclass
class TokenBatch:
    """A tokenised, right-padded batch.

    input_ids: (batch, tokens) int64.
    attention_mask: (batch, tokens) bool, True on every real token (specials included).
    residue_mask: (batch, tokens) bool, True exactly on residue positions; residue ``i`` of a
        sequence sits in column ``i + 1``.
    lengths: residues per sequence.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    residue_mask: torch.Tensor
    lengths: list[int]

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.residue_mask.to(device),
            self.lengths,
        )

    @property
    def n_residues(self) -> int:
        return sum(self.lengths)


class StopForward(Exception):
    """Raised by a hook once the last requested layer is computed, to skip the layers above."""


class ProteinLM(abc.ABC):
    """A protein language model seen through the residual stream.

    Attributes set by adapters:
        name: short identifier used in result paths and manifests.
        model_id: the checkpoint the weights came from (hub id, path or package file).
        revision: checkpoint revision or a content hash of the weights.
        d_model: width of the residual stream.
        n_layers: number of blocks; valid layers are 0..n_layers.
        max_residues: longest sequence the model accepts, in residues.
        alphabet: residue letters the model has tokens for.
        unknown_residue: the letter unknown residues are mapped to.
        lm_objective: "masked" (ESM-2, BERT) or "next_residue" (UniRep).
    """

    name: str
    model_id: str
    revision: str
    d_model: int
    n_layers: int
    max_residues: int
    alphabet: frozenset[str]
    unknown_residue: str = "X"
    lm_objective: Literal["masked", "next_residue"]

    def __init__(self) -> None:
        self._edits: dict[int, LayerEdit] = {}
        self.device = torch.device("cpu")
        self.autocast_dtype: torch.dtype | None = None

    # -- tokenisation -------------------------------------------------------------------------

    @abc.abstractmethod
    def token_ids(self, sequence: str) -> list[int]:
        """Token ids of one sequence, specials included (column i + 1 = residue i)."""

    @property
    @abc.abstractmethod
    def pad_token_id(self) -> int: ...

    def tokenize(self, sequences: Sequence[str]) -> TokenBatch:
        """Tokenise residue strings into a right-padded batch on the model's device."""
        too_long = [len(s) for s in sequences if len(s) > self.max_residues]
        if too_long:
            raise ValueError(
                f"{self.name} accepts at most {self.max_residues} residues; got a sequence of "
                f"{max(too_long)}. Filter by length first (datasets.<name>.max_length)."
            )
        ids = [self.token_ids(s) for s in sequences]
        width = max(len(t) for t in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.bool)
        residue_mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for row, (tokens, seq) in enumerate(zip(ids, sequences)):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            attention_mask[row, : len(tokens)] = True
            residue_mask[row, 1 : len(seq) + 1] = True
        return TokenBatch(input_ids, attention_mask, residue_mask, [len(s) for s in sequences]).to(
            self.device
        )

    # -- forward ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _run(self, batch: TokenBatch, capture: dict[int, torch.Tensor], stop_after: int | None):
        """Run the model, storing the output of each layer in ``capture`` (keys preset to the
        wanted layers), applying ``self._edits``; stop after layer ``stop_after`` when given,
        else run the LM head and return logits (batch, tokens, n_classes)."""

    def _run_from(self, layer: int, output: torch.Tensor, batch: TokenBatch, capture: dict[int, torch.Tensor],
                  stop_after: int | None):
        """`_run` with the layers above ``layer`` reading ``output`` (``layer``'s own edit and
        capture do not apply). Here the whole model runs with that layer's output replaced; an
        adapter that can resume at a layer (UniRep) runs only the layers above it."""
        with self.replace_layer_output(layer, lambda _: output):
            return self._run(batch, capture, stop_after)

    def _captured(self, layers: Sequence[int], run) -> dict[int, torch.Tensor]:
        """``{layer: float32 output}`` of ``layers`` from ``run(capture, stop_after)``, which
        stops after the highest of them."""
        wanted = sorted(set(layers))
        for layer in wanted:
            self._check_layer(layer)
        capture: dict[int, torch.Tensor] = {layer: None for layer in wanted}
        with self._autocast():
            run(capture, wanted[-1])
        return {layer: capture[layer].float() for layer in wanted}

    @torch.no_grad()
    def hidden_states(self, batch: TokenBatch, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """Hidden states ``{layer: (batch, tokens, d_model) float32}`` of the requested layers.

        Layers above the highest requested one are not computed.
        """
        return self._captured(layers, lambda capture, stop_after: self._run(batch, capture, stop_after))

    @torch.no_grad()
    def logits(self, batch: TokenBatch) -> torch.Tensor:
        """LM-head logits (batch, tokens, n_classes) float32, with any active layer edits."""
        with self._autocast():
            return self._run(batch, {}, stop_after=None).float()

    @torch.no_grad()
    def logits_and_hidden(self, batch: TokenBatch, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`logits` and, from the same forward pass, ``layer``'s output (as the layers above read
        it), to resume from there with `logits_from`."""
        self._check_layer(layer)
        capture: dict[int, torch.Tensor] = {layer: None}
        with self._autocast():
            logits = self._run(batch, capture, stop_after=None)
        return logits.float(), capture[layer]

    @torch.no_grad()
    def logits_from(self, layer: int, output: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """LM-head logits (batch, tokens, n_classes) float32 when the layers above ``layer`` read
        ``output`` (batch, tokens, d_model) for ``batch``; the edits of the layers above apply.
        Only those layers run where the adapter can resume there (`_run_from`), with the same
        result as the whole model."""
        self._check_layer(layer)
        with self._autocast():
            return self._run_from(layer, output, batch, {}, stop_after=None).float()

    @torch.no_grad()
    def hidden_states_from(self, layer: int, output: torch.Tensor, batch: TokenBatch,
                           layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """`hidden_states` of ``layers`` (all above ``layer``) when the layers above ``layer`` read
        ``output``, as `logits_from`."""
        self._check_layer(layer)
        if min(layers) <= layer:
            raise ValueError(f"layers {sorted(layers)} must all come after layer {layer}")
        return self._captured(layers, lambda capture, stop_after: self._run_from(layer, output, batch, capture,
                                                                                 stop_after))

    @contextlib.contextmanager
    def replace_layer_output(self, layer: int, edit: LayerEdit) -> Iterator[None]:
        """Within the block, the layers above ``layer`` (and the LM head) read ``edit(output)``
        instead of ``layer``'s own output; ``hidden_states`` reports the edited tensor too."""
        self._check_layer(layer)
        if layer in self._edits:
            raise ValueError(f"layer {layer} already has an edit in place")
        self._edits[layer] = edit
        try:
            yield
        finally:
            del self._edits[layer]

    def _apply(self, layer: int, output: torch.Tensor, capture: dict[int, torch.Tensor]) -> torch.Tensor:
        """Apply the edit of ``layer`` (if any) and record the result when requested."""
        if layer in self._edits:
            output = self._edits[layer](output).to(output.dtype)
        if layer in capture:
            capture[layer] = output
        return output

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer <= self.n_layers:
            raise ValueError(f"{self.name} has layers 0..{self.n_layers}; got layer {layer}")

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # -- LM head ------------------------------------------------------------------------------

    mask_token_id: int | None = None
    """Token that hides a residue from a masked LM (None for next-residue models)."""

    @abc.abstractmethod
    def residue_class_ids(self, sequence: str) -> list[int]:
        """LM-head class index of each residue of ``sequence``."""

    def lm_targets(self, sequences: Sequence[str], batch: TokenBatch) -> torch.Tensor:
        """(batch, tokens) int64 LM-head targets, -100 where the head predicts no residue.

        A masked LM predicts residue i at its own column (i + 1), to be read where that column
        was masked; a next-residue LM predicts residue i from the state before it (column i).
        """
        shift = 1 if self.lm_objective == "masked" else 0
        targets = torch.full(batch.input_ids.shape, -100, dtype=torch.long)
        for row, seq in enumerate(sequences):
            targets[row, shift : shift + len(seq)] = torch.tensor(self.residue_class_ids(seq))
        return targets.to(batch.input_ids.device)

    def to_device(self, device: str | torch.device, autocast: str | None = None) -> "ProteinLM":
        """Move the weights to ``device``; ``autocast`` in {None, "bf16", "fp16"} sets mixed precision."""
        self.device = torch.device(device)
        self.module.to(self.device)
        self.autocast_dtype = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[
            autocast
        ]
        return self

    @property
    @abc.abstractmethod
    def module(self) -> torch.nn.Module:
        """The underlying torch module (for .to(), parameter counts, eval mode)."""

    def describe(self) -> dict:
        """What a manifest records about the model."""
        return {
            "name": self.name,
            "model_id": self.model_id,
            "revision": self.revision,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "max_residues": self.max_residues,
            "lm_objective": self.lm_objective,
        }
