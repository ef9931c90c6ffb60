# Config look-ups and input functions shared by the stage rules.
import itertools
import sys

from protsae.activations import human_bytes, projected_cache_bytes

MODEL = config["model"]["name"]
RESULTS = f"results/{MODEL}"
LOGS = f"logs/{MODEL}"
LAYERS = sorted(config["layers"])
TRAIN_DATASET = config["sae"]["train_dataset"]

wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    shard=r"\d+",
    layer=r"\d+",
    k=r"\d+",
    sweep="[A-Za-z0-9_-]+",
    width=r"\d+",
    variant="[a-z0-9_]+",


def canonical(value):
    """``value`` with dict keys sorted at every level: Snakemake compares params by their text,
    so key order must not make an unchanged config look changed."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def model_identity():
    """The model keys that decide which weights are read (not where or how they run)."""
    return canonical({k: v for k, v in config["model"].items() if k in ("kind", "id", "path", "size", "seed")})


def dataset_config(dataset):
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise ValueError(
            f"no dataset {dataset!r} under 'datasets' in the config (have: {sorted(config['datasets'])})"
        ) from None


def shard_ids(dataset):
    return range(dataset_config(dataset)["n_shards"])


def sae_specs():
    """Every SAE the sweeps ask for, once: dicts with variant, layer, k, width."""
    specs = {}
    for sweep in config["sae"]["sweeps"]:
        for layer, k, width in itertools.product(sweep["layers"], sweep["k"], sweep["width"]):
            spec = dict(variant=sweep.get("variant", "topk"), layer=layer, k=k, width=width)
            specs[tuple(spec.values())] = spec
    return list(specs.values())


def plotted_sweeps():
    """Sweeps with something to plot: more than one layer, k or width."""
    return [s for s in config["sae"]["sweeps"] if max(len(s["layers"]), len(s["k"]), len(s["width"])) > 1]


def sweep_config(name):
    for sweep in config["sae"]["sweeps"]:
        if sweep["name"] == name:
            return sweep
    raise ValueError(f"no sweep named {name!r} under sae.sweeps")


def sae_dir(variant, layer, k, width, dataset=TRAIN_DATASET):
    return f"{RESULTS}/sae/{dataset}/layer{layer}/{variant}_k{k}_w{width}"


def all_targets():
    targets = [
        f"{RESULTS}/activations/{TRAIN_DATASET}/layer{layer}/manifest.json" for layer in LAYERS
    ]
    targets += [f"{sae_dir(**spec)}/metrics.json" for spec in sae_specs()]
    targets.append(f"{RESULTS}/sae/{TRAIN_DATASET}/summary.tsv")
    targets += [f"{RESULTS}/figures/sae_sweep_{sweep['name']}.png" for sweep in plotted_sweeps()]
    targets += encoding_targets()
    return targets


def codes_path(dataset, layer, variant, k, width, shard):
    return f"{RESULTS}/codes/{dataset}/layer{layer}/{variant}_k{k}_w{width}/shard{shard}.parquet"


def encoding_targets():
    """Sparse latent codes of every SAE over every dataset listed under encode.datasets."""
    return [
        codes_path(dataset, shard=shard, **spec)
        for dataset in config["encode"]["datasets"]
        for spec in sae_specs()
        for shard in shard_ids(dataset)
    ]


def encoding_input(wc):
    sae = sae_dir(wc.variant, wc.layer, wc.k, wc.width)
    inputs = {"weights": f"{sae}/sae.safetensors", "config": f"{sae}/config.json"}
    if config["encode"]["source"] == "cache":
        inputs["activations"] = f"{RESULTS}/activations/{wc.dataset}/layer{wc.layer}/shard{wc.shard}.parquet"
    else:
        inputs["sequences"] = f"{RESULTS}/sequences/{wc.dataset}/shards"
    return inputs


def _check_config():
    names = [sweep["name"] for sweep in config["sae"]["sweeps"]]
    if len(set(names)) != len(names):
        raise ValueError(f"sae.sweeps: sweep names must be unique, got {names}")
    for dataset in config["encode"]["datasets"]:
        dataset_config(dataset)
    if TRAIN_DATASET not in config["datasets"]:
        raise ValueError(f"sae.train_dataset is {TRAIN_DATASET!r}, not a key of 'datasets'")
    for spec in sae_specs():
        if spec["layer"] not in LAYERS:
            raise ValueError(
                f"sae.sweeps asks for layer {spec['layer']}, which 'layers' does not cache ({LAYERS})"
            )
        if spec["k"] > spec["width"]:
            raise ValueError(f"sae.sweeps: k={spec['k']} exceeds width={spec['width']}")
    for name, dataset in config["datasets"].items():
        if dataset["min_length"] > dataset["max_length"]:
            raise ValueError(f"datasets.{name}: min_length exceeds max_length")


def _projected_sizes():
    """Print the projected size of each activation cache once, in the main process."""
    lines = ["protsae: projected activation caches (per dataset, all layers):"]
    for name, dataset in config["datasets"].items():
        per_layer = projected_cache_bytes(
            dataset["n_sequences"],
            dataset["expected_mean_length"],
            _d_model(),
            config["activations"]["storage_dtype"],
            dataset["positions_per_sequence"],
        )
        lines.append(
            f"  {name}: {dataset['n_sequences']:,} sequences x {len(LAYERS)} layers, "
            f"{human_bytes(per_layer)} per layer, {human_bytes(per_layer * len(LAYERS))} in all"
        )
    print("\n".join(lines), file=sys.stderr)


def _d_model():
    """d_model of the configured model without loading it (known shapes), else from its config."""
    spec = config["model"]
    if spec["kind"] == "unirep":
        return spec["size"]
    if spec["kind"] == "tiny_esm2":
        return 32
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec.get("path") or spec["id"], local_files_only=True).hidden_size
    except OSError:
        # The checkpoint is not here (e.g. a dry run on a login node): use the published widths.
        return {"esm2_t6_8M": 320, "esm2_t12_35M": 480, "esm2_t30_150M": 640, "esm2_t33_650M": 1280,
                "esm2_t36_3B": 2560, "esm2_t48_15B": 5120}.get(_esm_prefix(spec["id"]), 1280)


def _esm_prefix(model_id):
    name = model_id.split("/")[-1]
    return "_".join(name.split("_")[:3])


_check_config()
if workflow.is_main_process:
    _projected_sizes()
