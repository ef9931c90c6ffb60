"""Hugging Face masked protein LMs: ESM-2 (the paper's model) and any ``AutoModelForMaskedLM``."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from protsae.models.base import STANDARD_RESIDUES, ProteinLM, StopForward, TokenBatch

# ESM-2's vocabulary, in token-id order (fair-esm's Alphabet, as the HF checkpoints ship it).
ESM2_VOCAB = [
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
]  # fmt: skip

NOT_CACHED_HELP = (
    "{model_id!r} is neither a local directory nor in the local Hugging Face cache "
    "(HF_HOME={hf_home}). Pre-download it on a machine with internet access, e.g.\n"
    "    huggingface-cli download {model_id}\n"
    "then copy the cache (or the snapshot directory) to this machine and point HF_HOME at it, "
    "or set model.path in the config to the snapshot directory."
)


class HFMaskedLM(ProteinLM):
    """A masked protein LM from Hugging Face ``transformers``, residue per token.

    Hidden states follow ``output_hidden_states``: layer 0 is the embedding output, layer l the
    output of block l, and for ESM-2 the last layer is read after the final layer norm, as
    ``transformers`` reports it.
    """

    lm_objective = "masked"

    def __init__(self, model, tokenizer, model_id: str, name: str | None = None,
                 revision: str | None = None, max_residues: int | None = None):
        super().__init__()
        self._model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = str(model_id)
        self.name = name or Path(self.model_id.rstrip("/")).name
        self.revision = revision or getattr(model.config, "_commit_hash", None) or _weights_digest(model)
        self.d_model = model.config.hidden_size
        self.n_layers = model.config.num_hidden_layers
        positions = getattr(model.config, "max_position_embeddings", 512)
        if model.config.model_type == "esm":
            positions -= 2  # ESM's HF configs count fair-esm's padding offset: 1026 means 1024 tokens
        self.max_residues = max_residues or positions - 2  # minus BOS/CLS and EOS/SEP
        vocab = tokenizer.get_vocab()
        self._vocab = {tok: i for tok, i in vocab.items() if len(tok) == 1 and tok.isalpha()}
        self.alphabet = frozenset(self._vocab)
        self.unknown_residue = "X" if "X" in self._vocab else ""
        self._cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self._eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self._unk = tokenizer.unk_token_id
        self.mask_token_id = tokenizer.mask_token_id
        self._blocks, self._embeddings, self._final_norm = _locate_modules(model)

    @property
    def module(self) -> torch.nn.Module:
        return self._model

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def token_ids(self, sequence: str) -> list[int]:
        try:
            residues = [self._vocab[letter] for letter in sequence]
        except KeyError as err:
            raise ValueError(
                f"residue {err.args[0]!r} has no token in {self.name}; map it first "
                "(datasets.<name>.alphabet_policy)"
            ) from None
        return [self._cls, *residues, self._eos]

    def residue_class_ids(self, sequence: str) -> list[int]:
        return [self._vocab[letter] for letter in sequence]

    def _run(self, batch: TokenBatch, capture: dict, stop_after: int | None):
        hooks = []

        def hook_for(layer: int):
            def hook(module, args, output):
                hidden = output[0] if isinstance(output, tuple) else output
                edited = self._apply(layer, hidden, capture)
                if stop_after is not None and layer == stop_after:
                    raise StopForward
                if edited is hidden:
                    return None
                return (edited, *output[1:]) if isinstance(output, tuple) else edited

            return hook

        top = self.n_layers
        hooks.append(self._embeddings.register_forward_hook(hook_for(0)))
        for layer, block in enumerate(self._blocks, start=1):
            # The last block's output is read after the final norm (when there is one).
            if layer == top and self._final_norm is not None:
                continue
            hooks.append(block.register_forward_hook(hook_for(layer)))
        if self._final_norm is not None:
            hooks.append(self._final_norm.register_forward_hook(hook_for(top)))
        try:
            return self._model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        except StopForward:
            return None
        finally:
            for handle in hooks:
                handle.remove()


def _locate_modules(model):
    """(blocks, embeddings, final_norm) of a BERT-like masked LM."""
    base = model.base_model
    encoder = getattr(base, "encoder", None)
    blocks = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if blocks is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")
    final_norm = getattr(encoder, "emb_layer_norm_after", None)
    return list(blocks), base.embeddings, final_norm


def _weights_digest(model) -> str:
    """A short content hash of the weights, for manifests when no hub revision is known."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
    return "sha256:" + digest.hexdigest()[:16]


def load_hf_masked_lm(model_id: str, name: str | None = None, allow_download: bool = False,
                      max_residues: int | None = None) -> HFMaskedLM:
    """Load an ESM-2 (or other masked LM) checkpoint by hub id or local path.

    Hub ids resolve from the local cache only, unless ``allow_download``: cluster nodes are
    usually offline, and a silent download at paper scale is a surprise nobody wants.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    local = os.path.isdir(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=not allow_download)
        model = AutoModelForMaskedLM.from_pretrained(model_id, local_files_only=not allow_download)
    except OSError as err:
        if local:
            raise OSError(f"cannot load a masked LM from directory {model_id!r}: {err}") from err
        hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise OSError(NOT_CACHED_HELP.format(model_id=model_id, hf_home=hf_home)) from err
    return HFMaskedLM(model, tokenizer, model_id, name=name, max_residues=max_residues)


ANTIBERTY_HELP = (
    "AntiBERTy's weights ship inside the PyPI package antiberty 0.1.3 (MIT; 1.0.0 no longer has "
    "them): pip install --no-deps antiberty==0.1.3 (make setup does)"
)


def load_antiberty(name: str | None = None) -> HFMaskedLM:
    """AntiBERTy (Ruffolo et al. 2021), a BERT masked LM of antibody sequences (8 blocks, d_model
    512, absolute positions), from the weights inside ``antiberty==0.1.3``.

    Its checkpoint is a ``BertForMaskedLM`` plus species/chain/graft heads, which are dropped. The
    package's own ``BertTokenizer(vocab_file=...)`` loses the vocabulary under transformers 5 (every
    residue becomes [UNK]); here the vocabulary is passed as a mapping.
    """
    import importlib.resources

    from transformers import BertForMaskedLM, BertTokenizer
    from transformers.utils import logging as hf_logging

    try:
        models = importlib.resources.files("antiberty") / "trained_models"
    except ModuleNotFoundError:
        raise ModuleNotFoundError(ANTIBERTY_HELP) from None
    checkpoint, vocab_file = models / "AntiBERTy_md_smooth", models / "vocab.txt"
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} has no config.json; {ANTIBERTY_HELP}")
    vocab = {token: i for i, token in enumerate(vocab_file.read_text().split())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=False)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the dropped heads' keys are expected, not news
    try:
        model = BertForMaskedLM.from_pretrained(str(checkpoint))
    finally:
        hf_logging.set_verbosity(verbosity)
    return HFMaskedLM(model, tokenizer, "antiberty==0.1.3/AntiBERTy_md_smooth", name=name or "antiberty")


def esm2_tokenizer(directory: str | os.PathLike | None = None):
    """An ``EsmTokenizer`` with ESM-2's vocabulary, built without any download. Its vocab.txt is
    written to ``directory``, or, without one, to a temporary folder removed once the tokenizer
    has read it."""
    from transformers import EsmTokenizer

    if directory is None:
        with tempfile.TemporaryDirectory(prefix="esm2_vocab_") as scratch:
            return esm2_tokenizer(scratch)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(ESM2_VOCAB) + "\n")
    return EsmTokenizer(str(vocab_file))


def random_esm2(hidden_size: int = 32, num_layers: int = 3, num_heads: int = 4,
                intermediate_size: int | None = None, max_positions: int = 1026, seed: int = 0):
    """A randomly initialised ``EsmForMaskedLM`` with ESM-2's architecture and vocabulary.

    ``random_esm2(1280, 33, 20, 5120)`` has the exact shape of esm2_t33_650M_UR50D.
    """
    from transformers import EsmConfig, EsmForMaskedLM

    config = EsmConfig(
        vocab_size=len(ESM2_VOCAB),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_positions,
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        mask_token_id=ESM2_VOCAB.index("<mask>"),
        pad_token_id=ESM2_VOCAB.index("<pad>"),
    )
    torch.manual_seed(seed)
    return EsmForMaskedLM(config).eval()


def save_random_esm2(directory: str | os.PathLike, **shape) -> Path:
    """Write a random ESM-2 (model + tokenizer) with ``save_pretrained``, loadable by path."""
    directory = Path(directory)
    model = random_esm2(**shape)
    model.save_pretrained(directory)
    esm2_tokenizer(directory).save_pretrained(directory)
    (directory / "protsae_random_model.json").write_text(json.dumps({"random_init": shape}) + "\n")
    return directory


def tiny_esm2(seed: int = 0) -> HFMaskedLM:
    """A tiny random ESM-2 (3 layers, d_model 32) for unit tests and CI."""
    return HFMaskedLM(random_esm2(seed=seed), esm2_tokenizer(), "tiny-esm2", name="tiny_esm2",
                      revision=f"random-seed{seed}")


assert set(STANDARD_RESIDUES) <= set(ESM2_VOCAB)
