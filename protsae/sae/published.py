"""Published SAEs in the layouts of four libraries, converted into protsae's own SAEs (`TopKSAE`
for top-k encoders, `ReLUSAE` for ReLU ones), so that an imported SAE is encoded, analysed,
probed, steered and browsed like a trained one (`import_published` writes it where training
would have).

Every layout's forward is an instance of protsae's

    pre   = W_enc (x' - b_pre) + b_enc        x' = x, or x standardised per token
    z     = ReLU of the top k of pre (TopK), or ReLU(pre) (ReLU)
    x_hat = W_dec^T z + b_pre                 (mapped back to input units when standardised)

with ``W_enc`` and ``W_dec`` ``(n_latents, d_model)``. The weights are kept as published (no
decoder renormalisation, no folding), so the codes are the library's own values:

* ``interprot``: InterProt's state dict, read by `protsae.sae.interprot.load_interprot` (TopK,
  tokens standardised).
* ``sparsify`` (EleutherAI): a folder with ``sae.safetensors`` (``encoder.weight`` ``(n, d)``,
  ``encoder.bias``, ``W_dec`` ``(n, d)``, ``b_dec``) and ``cfg.json`` (``k``, ``num_latents`` or
  ``expansion_factor``, ``d_in``). Its encoder takes the top k of ``ReLU(encoder(x - b_dec))``;
  the ReLU is monotone, so these are the latents of ReLU after top-k, and a slot the ReLU zeroes
  holds 0 either way. Transcoders, skip connections and other activations are refused.
* ``saelens``: a folder with ``sae_weights.safetensors`` (``W_enc`` ``(d, n)``, ``b_enc``,
  ``W_dec`` ``(n, d)``, ``b_dec``) and ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``
  standard or topk, ``k``, ``apply_b_dec_to_input``, ``normalize_activations``). Without
  ``apply_b_dec_to_input`` its encoder sees ``x``, not ``x - b_dec``: ``b_enc`` then absorbs
  ``b_dec W_enc`` (exact). ``normalize_activations: layer_norm`` is protsae's per-token
  standardisation (the same mean, unbiased std and 1e-5); ``constant_norm_rescale`` (a
  per-token norm) and ``expected_average_only_in`` (a dataset scalar SAELens keeps outside the
  checkpoint) are refused, as are the other architectures (JumpReLU, gated, ...).
* ``dictionary_learning`` (Marks et al.; InterPLM's SAEs): a folder with ``ae.pt``. Its
  ``AutoEncoder`` (and InterPLM's ``ReLUSAE``) has ``encoder.weight`` ``(n, d)``,
  ``encoder.bias``, ``decoder.weight`` ``(d, n)`` (no bias) and ``bias`` ``(d,)``: ``z =
  ReLU(encoder(x - bias))``, ``x_hat = decoder(z) + bias``. ``AutoEncoderTopK`` has ``b_dec`` in
  place of ``bias`` and a ``k`` buffer: the top k of ``ReLU(encoder(x - b_dec))``. InterPLM may
  store ``activation_rescale_factor`` ``(n,)``, by which its analyses divide the features
  (``normalize_features``); ``rescale_features`` folds it in (latent j's encoder row and bias
  divided by it, its decoder row multiplied, exact for ReLU), else it is ignored. Its
  ``normalize_to_sqrt_d`` (each token rescaled to norm sqrt(d)) is refused. A ``config.json``
  beside ``ae.pt`` (the training's) is checked when present.

ReLU SAEs keep every active latent in `forward` (FVU, splice evaluation) and the ``k`` largest
("code slots") in the codes `encode` returns, like protsae's ``relu_l1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from protsae.activations.stream import read_heldout
from protsae.files import write_json
from protsae.sae.config import SAEConfig
from protsae.sae.interprot import interprot_name_info, load_interprot
from protsae.sae.quality import RECONSTRUCTION_METRICS, dictionary_metrics
from protsae.sae.train import evaluate
from protsae.sae.variants import TopKSAE, sae_class
from protsae.spec import PUBLISHED_FILES

LAYOUTS = tuple(PUBLISHED_FILES)
"""The layouts `load_published` reads (``sae.published[].layout``)."""

SAELENS_NORMALISATIONS = ("none", "layer_norm")
"""SAELens ``normalize_activations`` values with a protsae equivalent."""


def _folder_files(folder: Path, layout: str) -> list[Path]:
    """The files of a ``layout`` folder (`PUBLISHED_FILES`), each checked to exist."""
    names = PUBLISHED_FILES[layout]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: a {layout} SAE is a folder holding {', '.join(names)}; no such folder")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: a {layout} SAE folder holds {', '.join(names)}; {', '.join(missing)} missing")
    return [folder / name for name in names]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _check_tensors(path: Path, state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], layout: str) -> None:
    """Every tensor of ``shapes`` present in ``state`` with that shape, else an error naming the file."""
    missing = sorted(set(shapes) - state.keys())
    if missing:
        raise ValueError(f"{path}: not a {layout} SAE: missing {missing} (it has {sorted(state)})")
    for name, shape in shapes.items():
        if tuple(state[name].shape) != tuple(shape):
            raise ValueError(f"{path}: {name} is {tuple(state[name].shape)}, expected {tuple(shape)}")


def _config_int(path: Path, cfg: dict, key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{path}: key {key!r} must be an integer, found {value!r}")
    return value


def _check_k(path: Path, k_checkpoint: int, k: int | None) -> int:
    """The checkpoint's k, after checking it against the one asked for (if any)."""
    if k is not None and k != k_checkpoint:
        raise ValueError(f"{path}: the checkpoint's k is {k_checkpoint}, but k={k} was asked for")
    return k_checkpoint


def _build(
    *, topk: bool, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_pre: torch.Tensor, k: int,
    standardize_tokens: bool, source: dict, device: torch.device | str,
) -> TopKSAE:
    """A protsae SAE holding these weights (``W_enc``, ``W_dec`` ``(n_latents, d_model)``) in float32."""
    n_latents, d_model = W_dec.shape
    cfg = SAEConfig(
        d_model=d_model, n_latents=n_latents, k=k, variant="topk" if topk else "relu_l1",
        normalize_input=False, standardize_tokens=standardize_tokens,
    )
    sae = sae_class(cfg.variant)(cfg, device=device)
    with torch.no_grad():
        for parameter, value in ((sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.W_dec, W_dec), (sae.b_pre, b_pre)):
            parameter.copy_(value.to(torch.float32))
    sae.source = source
    return sae


def _checked_k(path: Path, n_latents: int, k: int | None, what: str) -> int:
    """The code slots ``k`` of a ReLU SAE, which its checkpoint does not give."""
    if k is None:
        raise ValueError(f"{path}: a {what} has no k; give k, the latent slots stored per token")
    if not 0 < k <= n_latents:
        raise ValueError(f"{path}: k={k} must be in [1, n_latents={n_latents}]")
    return k


def load_sparsify(path: str | os.PathLike, k: int | None = None, device: torch.device | str = "cpu") -> TopKSAE:
    """A `TopKSAE` of an EleutherAI sparsify SAE folder (see the module docstring); ``k``, when
    given, must be the checkpoint's."""
    folder = Path(path)
    weights_path, cfg_path = _folder_files(folder, "sparsify")
    cfg = _read_json(cfg_path)
    state = load_file(str(weights_path))
    for flag in ("transcode", "skip_connection"):
        if cfg.get(flag):
            raise ValueError(f"{cfg_path}: {flag} is true; only plain sparse autoencoders are read")
    if "W_skip" in state:
        raise ValueError(f"{weights_path}: has a skip connection (W_skip); only plain sparse autoencoders are read")
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise ValueError(f"{cfg_path}: activation is {activation!r}; only 'topk' is read")
    if "encoder.weight" not in state:
        raise ValueError(f"{weights_path}: not a sparsify SAE: missing ['encoder.weight'] (it has {sorted(state)})")
    n_latents, d_in = state["encoder.weight"].shape
    if "d_in" in cfg and cfg["d_in"] != d_in:
        raise ValueError(f"{cfg_path}: d_in is {cfg['d_in']}, but encoder.weight is {(n_latents, d_in)}")
    configured = cfg.get("num_latents") or d_in * (cfg.get("expansion_factor") or 0)
    if configured != n_latents:
        raise ValueError(
            f"{cfg_path}: num_latents {cfg.get('num_latents')!r} / expansion_factor "
            f"{cfg.get('expansion_factor')!r} give {configured} latents, but encoder.weight has {n_latents}"
        )
    _check_tensors(weights_path, state, {
        "encoder.bias": (n_latents,), "W_dec": (n_latents, d_in), "b_dec": (d_in,),
    }, "sparsify")
    k = _check_k(cfg_path, _config_int(cfg_path, cfg, "k"), k)
    return _build(
        topk=True, W_enc=state["encoder.weight"], b_enc=state["encoder.bias"], W_dec=state["W_dec"],
        b_pre=state["b_dec"], k=k, standardize_tokens=False, device=device,
        source={"format": "sparsify", "path": str(folder), "cfg": cfg},
    )


def load_saelens(path: str | os.PathLike, k: int | None = None, device: torch.device | str = "cpu") -> TopKSAE:
    """A `TopKSAE` (architecture topk) or `ReLUSAE` (standard) of an SAELens SAE folder (see the
    module docstring). ``k``: for topk it must be the checkpoint's; for standard, the code slots."""
    folder = Path(path)
    weights_path, cfg_path = _folder_files(folder, "saelens")
    cfg = _read_json(cfg_path)
    state = load_file(str(weights_path))
    d_in, d_sae = _config_int(cfg_path, cfg, "d_in"), _config_int(cfg_path, cfg, "d_sae")
    # SAELens before v6 named the activation instead of the architecture.
    legacy_topk = cfg.get("activation_fn_str", cfg.get("activation_fn")) == "topk"
    architecture = cfg.get("architecture", "topk" if legacy_topk else "standard")
    if architecture not in ("standard", "topk"):
        raise ValueError(f"{cfg_path}: architecture {architecture!r}; only 'standard' and 'topk' are read")
    normalisation = cfg.get("normalize_activations", "none") or "none"
    if normalisation not in SAELENS_NORMALISATIONS:
        raise ValueError(
            f"{cfg_path}: normalize_activations is {normalisation!r}; only {list(SAELENS_NORMALISATIONS)} "
            "have a protsae equivalent (fold a constant scaling factor into the weights first)"
        )
    for flag in ("finetuning_scaling_factor", "rescale_acts_by_decoder_norm"):
        if cfg.get(flag):
            raise ValueError(f"{cfg_path}: {flag} is set; it is not read")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise ValueError(f"{cfg_path}: reshape_activations is {cfg['reshape_activations']!r}; only 'none' is read")
    _check_tensors(weights_path, state, {
        "W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
    }, "saelens")
    W_enc, b_enc, b_dec = state["W_enc"].float(), state["b_enc"].float(), state["b_dec"].float()
    if not cfg.get("apply_b_dec_to_input", True):
        # W_enc^T (x - b_dec) + b_enc' = W_enc^T x + b_enc with b_enc' = b_enc + b_dec W_enc.
        b_enc = b_enc + b_dec @ W_enc
    topk = architecture == "topk"
    if topk:
        k_checkpoint = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        k = _check_k(cfg_path, _config_int(cfg_path, {"k": k_checkpoint}, "k"), k)
    else:
        k = _checked_k(cfg_path, d_sae, k, "standard (ReLU) SAELens SAE")
    return _build(
        topk=topk, W_enc=W_enc.t(), b_enc=b_enc, W_dec=state["W_dec"], b_pre=b_dec, k=k,
        standardize_tokens=normalisation == "layer_norm", device=device,
        source={"format": "saelens", "path": str(folder), "cfg": cfg},
    )


def load_dictionary_learning(
    path: str | os.PathLike, k: int | None = None, rescale_features: bool = False, device: torch.device | str = "cpu"
) -> TopKSAE:
    """A `ReLUSAE` (``AutoEncoder``, InterPLM's ``ReLUSAE``) or `TopKSAE` (``AutoEncoderTopK``)
    of a dictionary_learning folder (see the module docstring). ``k``: the code slots of a ReLU
    SAE; for a TopK one it must be the checkpoint's."""
    folder = Path(path)
    (weights_path,) = _folder_files(folder, "dictionary_learning")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "encoder.weight" not in state:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{weights_path}: not a dictionary_learning state dict: no encoder.weight (it has {keys})")
    n_latents, d_in = state["encoder.weight"].shape
    config_path = folder / "config.json"
    trainer = _read_json(config_path).get("trainer", {}) if config_path.is_file() else {}
    for key, value in (("activation_dim", d_in), ("dict_size", n_latents)):
        if key in trainer and trainer[key] != value:
            raise ValueError(f"{config_path}: trainer.{key} is {trainer[key]}, but {weights_path} has {value}")
    if bool(state.get("normalize_to_sqrt_d", torch.tensor(False))):
        raise ValueError(f"{weights_path}: normalize_to_sqrt_d is set (each token rescaled to norm sqrt(d)); "
                         "protsae has no such input normalisation")
    topk = "bias" not in state and "b_dec" in state and "k" in state
    bias_name = "b_dec" if topk else "bias"
    _check_tensors(weights_path, state, {
        "encoder.bias": (n_latents,), "decoder.weight": (d_in, n_latents), bias_name: (d_in,),
    }, "dictionary_learning")
    W_enc, b_enc, W_dec = state["encoder.weight"].float(), state["encoder.bias"].float(), state["decoder.weight"].float().t()
    source = {"format": "dictionary_learning", "path": str(folder), "trainer": trainer}
    if topk:
        k = _check_k(weights_path, int(state["k"]), k)
    else:
        k = _checked_k(weights_path, n_latents, k, "ReLU dictionary_learning SAE")
    if rescale_features:
        if "activation_rescale_factor" not in state:
            raise ValueError(f"{weights_path}: rescale_features is set, but it has no activation_rescale_factor")
        factor = state["activation_rescale_factor"].float()
        if factor.shape != (n_latents,) or not bool((factor > 0).all()):
            raise ValueError(f"{weights_path}: activation_rescale_factor must be {n_latents} positive numbers")
        if topk:
            raise ValueError(f"{weights_path}: rescale_features changes which latents a top-k keeps; not for AutoEncoderTopK")
        W_enc, b_enc, W_dec = W_enc / factor[:, None], b_enc / factor, W_dec * factor[:, None]
        source["rescaled_features"] = True
    return _build(
        topk=topk, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_pre=state[bias_name], k=k,
        standardize_tokens=False, device=device, source=source,
    )


def load_published(
    layout: str, path: str | os.PathLike, k: int | None = None, rescale_features: bool = False,
    device: torch.device | str = "cpu",
) -> TopKSAE:
    """The protsae SAE of a published checkpoint in ``layout`` (`LAYOUTS`). ``k``: for top-k
    layouts, checked against the checkpoint's (InterProt: against its file name's, when it has
    one; it gives k where the name does not); for ReLU ones, the code slots. ``rescale_features``:
    dictionary_learning only (InterPLM's activation_rescale_factor)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown published-SAE layout {layout!r} (have: {list(LAYOUTS)})")
    if rescale_features and layout != "dictionary_learning":
        raise ValueError(f"rescale_features applies to the dictionary_learning layout only, not {layout!r}")
    if layout == "interprot":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: an InterProt SAE is one checkpoint file; no such file")
        named_k = interprot_name_info(path).get("k")
        if k is not None and named_k is not None:
            _check_k(path, named_k, k)
        return load_interprot(path, k=k, device=device)
    if layout == "sparsify":
        return load_sparsify(path, k=k, device=device)
    if layout == "saelens":
        return load_saelens(path, k=k, device=device)
    return load_dictionary_learning(path, k=k, rescale_features=rescale_features, device=device)


def import_published(
    entry: dict, key: str, d_model: int, shard_paths: list[str], holdout_fraction: float, holdout_seed: int,
    eval_tokens: int, out_dir: str | os.PathLike, batch_size: int = 4096,
) -> dict:
    """Convert the published SAE of config entry ``entry`` (a ``sae.published`` item, ``key`` its
    place in the config, for errors) into a protsae SAE and write it to ``out_dir`` as training
    would (``sae.safetensors``, ``config.json`` with a ``source`` section naming the layout,
    path and the library's own config) with its ``metrics.json``: the trainer's held-out metrics
    (`protsae.sae.train.evaluate`, SAEBench's core metrics among them) on the held-out tokens of
    ``shard_paths`` (the training dataset's cache at the entry's layer, split by
    ``holdout_fraction`` and ``holdout_seed`` as training splits it) and the dictionary metrics of
    the weights, under the names training gives them. There is no training run, so no
    ``dead_share`` (the held-out never-fired share stands in).

    ``d_model`` is the model layer's width; a checkpoint that reads another width, or whose
    number of latents or k differ from the entry's, is an error that names ``key`` and the file.
    Returns the metrics.
    """
    name = entry["name"]
    where = f"{key} (name {name!r}, layout {entry['layout']}, path {entry['path']})"
    try:
        sae = load_published(entry["layout"], entry["path"], k=entry["k"], rescale_features=entry.get("rescale_features", False))
    except (ValueError, FileNotFoundError) as err:
        raise type(err)(f"{where}: {err}") from err
    if sae.cfg.d_model != d_model:
        raise ValueError(f"{where}: the SAE reads vectors of d_in={sae.cfg.d_model}, but layer {entry['layer']} "
                         f"of the model has d_model={d_model}")
    if sae.cfg.n_latents != entry["width"]:
        raise ValueError(f"{where}: the checkpoint has {sae.cfg.n_latents} latents, but the entry says width={entry['width']}")
    sae.eval()
    heldout = read_heldout(shard_paths, holdout_fraction, holdout_seed, eval_tokens, dtype=None)
    if len(heldout) == 0:
        found = dict.fromkeys(["mse", "fvu", "fvu_stored", "l0", "never_fired_share", *RECONSTRUCTION_METRICS],
                              None) | {"n_tokens": 0}
    else:
        found = evaluate(sae, heldout, batch_size)
    metrics = {
        "heldout_mse": found["mse"],
        "heldout_fvu": found["fvu"],
        "heldout_fvu_stored": found["fvu_stored"],
        "heldout_l0": found["l0"],
        "heldout_never_fired_share": found["never_fired_share"],
        "heldout_tokens": found["n_tokens"],
        **{f"heldout_{key}": found[key] for key in RECONSTRUCTION_METRICS},
        **dictionary_metrics(sae),
    }
    source = {"name": name, "layout": entry["layout"], **sae.source}
    sae.save(out_dir, extra_config={"source": source})
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics
