"""Synthetic published SAEs (random weights) written in each library's own layout, for the
unit tests of protsae.sae.published and for a workflow run that imports them.

As a script, ``python tests/published_checkpoints.py WORKDIR [CONFIG]`` writes one SAE of each
layout for the tiny config's model under ``WORKDIR/resources/published/`` and, beside it, the
config ``WORKDIR/tiny_published.yaml``: CONFIG (default config/tiny.yaml) with those SAEs under
``sae.published`` and probed (``probes.sweeps`` + ``published``). Run Snakemake in WORKDIR with
``--configfile tiny_published.yaml``.

Each writer returns the tensors it wrote (in the library's own names and shapes), so that a test
can run the library's forward on them directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from protsae.activations.sizes import model_shape

REPO = Path(__file__).resolve().parents[1]


def _random(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def _weights(d_in: int, width: int, seed: int, bias_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random encoder (width, d_in), decoder (width, d_in) and biases; the encoder biases are
    negative enough that a ReLU SAE leaves some latents off on a typical token. ``bias_scale``
    scales the biases (small for activations of small norm, so that the input, not the bias,
    decides which latents fire)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "encoder": _random(generator, width, d_in, scale=d_in**-0.5),
        "encoder_bias": (_random(generator, width, scale=0.5) - 0.3) * bias_scale,
        "decoder": _random(generator, width, d_in, scale=width**-0.5),
        "decoder_bias": _random(generator, d_in, scale=0.5) * bias_scale,
    }


def write_interprot(folder: Path, d_in: int, width: int, k: int, layer: int = 2, seed: int = 0,
                    bias_scale: float = 1.0) -> dict:
    """InterProt's state dict (w_enc (d, n), w_dec (n, d), b_enc, b_pre) as a safetensors file
    named as InterProt names theirs; the path is under ``"path"`` of the result."""
    w = _weights(d_in, width, seed, bias_scale)
    state = {"w_enc": w["encoder"].t().contiguous(), "w_dec": w["decoder"], "b_enc": w["encoder_bias"],
             "b_pre": w["decoder_bias"]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"synthetic_plm{d_in}_l{layer}_sae{width}_k{k}.safetensors"
    save_file(state, str(path))
    return state | {"path": path}


def write_sparsify(folder: Path, d_in: int, width: int, k: int, seed: int = 1, bias_scale: float = 1.0,
                   **cfg_changes) -> dict:
    """An EleutherAI sparsify folder: sae.safetensors (encoder.weight, encoder.bias, W_dec,
    b_dec) and cfg.json as its ``save_to_disk`` writes them."""
    w = _weights(d_in, width, seed, bias_scale)
    state = {"encoder.weight": w["encoder"], "encoder.bias": w["encoder_bias"], "W_dec": w["decoder"],
             "b_dec": w["decoder_bias"]}
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": True, "num_latents": width, "k": k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": d_in} | cfg_changes
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return state


def write_saelens(folder: Path, d_in: int, width: int, architecture: str = "standard", k: int | None = None,
                  seed: int = 2, bias_scale: float = 1.0, **cfg_changes) -> dict:
    """An SAELens folder: sae_weights.safetensors (W_enc (d, n), b_enc, W_dec (n, d), b_dec)
    and cfg.json as its ``save_model`` writes them (v6 keys)."""
    w = _weights(d_in, width, seed, bias_scale)
    state = {"W_enc": w["encoder"].t().contiguous(), "b_enc": w["encoder_bias"], "W_dec": w["decoder"],
             "b_dec": w["decoder_bias"]}
    cfg = {"architecture": architecture, "d_in": d_in, "d_sae": width, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"model_name": "synthetic", "hook_name": "blocks.2.hook_resid_post"}}
    if architecture == "topk":
        cfg["k"] = k
    cfg |= cfg_changes
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return state


def write_dictionary_learning(folder: Path, d_in: int, width: int, kind: str = "relu", k: int | None = None,
                              rescale: bool = False, seed: int = 3, config: bool = True,
                              bias_scale: float = 1.0) -> dict:
    """A dictionary_learning folder: ae.pt and the training's config.json. ``kind`` relu:
    ``AutoEncoder`` (bias, encoder.weight (n, d), encoder.bias, decoder.weight (d, n)), with
    ``rescale`` InterPLM's ``ReLUSAE`` buffers (activation_rescale_factor, normalize_to_sqrt_d
    false); topk: ``AutoEncoderTopK`` (b_dec for bias, k and threshold buffers)."""
    w = _weights(d_in, width, seed, bias_scale)
    state = {"encoder.weight": w["encoder"], "encoder.bias": w["encoder_bias"],
             "decoder.weight": w["decoder"].t().contiguous()}
    if kind == "relu":
        state["bias"] = w["decoder_bias"]
        if rescale:
            generator = torch.Generator().manual_seed(seed + 100)
            state["activation_rescale_factor"] = torch.rand(width, generator=generator) + 0.5
            state["normalize_to_sqrt_d"] = torch.tensor(False)
    else:
        state |= {"b_dec": w["decoder_bias"], "k": torch.tensor(k, dtype=torch.int), "threshold": torch.tensor(-1.0)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "ae.pt")
    if config:
        dict_class = {"relu": "ReLUSAE" if rescale else "AutoEncoder", "topk": "AutoEncoderTopK"}[kind]
        trainer = {"dict_class": dict_class, "activation_dim": d_in, "dict_size": width, "layer": 2,
                   "lm_name": "synthetic"} | ({"k": k} if kind == "topk" else {})
        (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": d_in}}))
    return state


def write_workflow_saes(workdir: Path, d_model: int, width: int = 64, k: int = 4) -> list[dict]:
    """One SAE of each layout under ``workdir/resources/published/``, two at layer 1 and two at
    layer 2, and their ``sae.published`` entries (paths relative to ``workdir``)."""
    root = Path("resources/published")
    # A tiny random model's activations have norms near 0.1: small biases, so that the input
    # picks the latents (as in a trained SAE) rather than the same few firing everywhere.
    small = {"bias_scale": 0.02}
    interprot = write_interprot(workdir / root / "interprot", d_model, width, k, layer=2)
    write_sparsify(workdir / root / "sparsify" / "layers.1", d_model, width, k, **small)
    write_saelens(workdir / root / "saelens", d_model, width, "standard", **small)
    write_dictionary_learning(workdir / root / "interplm" / "layer_1", d_model, width, "relu", rescale=True, **small)
    common = {"k": k, "width": width}
    return [
        {"name": "interprot_l2", "layout": "interprot", "path": str(interprot["path"].relative_to(workdir)),
         "layer": 2, **common},
        {"name": "sparsify_l1", "layout": "sparsify", "path": str(root / "sparsify" / "layers.1"), "layer": 1, **common},
        {"name": "saelens_l2", "layout": "saelens", "path": str(root / "saelens"), "layer": 2, **common},
        {"name": "interplm_l1", "layout": "dictionary_learning", "path": str(root / "interplm" / "layer_1"),
         "layer": 1, "rescale_features": True, **common},
    ]


def published_config(config: dict, entries: list[dict]) -> dict:
    """``config`` with ``entries`` under sae.published, probed beside the sweeps it probes."""
    config = json.loads(json.dumps(config))
    config["sae"]["published"] = entries
    if "probes" in config and config["probes"].get("sweeps") is not None:
        config["probes"]["sweeps"] = [*config["probes"]["sweeps"], "published"]
    return config


def write_workflow_config(workdir: Path, config_path: Path = REPO / "config" / "tiny.yaml",
                          name: str = "tiny_published.yaml") -> Path:
    """The published SAEs for ``config_path``'s model under ``workdir`` and the config that
    imports them, ``workdir/name`` (returned)."""
    config = yaml.safe_load(Path(config_path).read_text())
    entries = write_workflow_saes(workdir, model_shape(config["model"]).d_model)
    out = workdir / name
    out.write_text(yaml.safe_dump(published_config(config, entries), sort_keys=False))
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: python {sys.argv[0]} WORKDIR [CONFIG]")
    print(write_workflow_config(Path(sys.argv[1]), *(Path(arg) for arg in sys.argv[2:])))
