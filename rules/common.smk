# Config look-ups and input functions shared by the stage rules.
import itertools
import re
import sys

from protsae.activations.sizes import human_bytes, projected_cache_bytes

MODEL = config["model"]["name"]
RESULTS = f"results/{MODEL}"
LOGS = f"logs/{MODEL}"
LAYERS = sorted(config["layers"])
TRAIN_DATASET = config["sae"]["train_dataset"]
# The latent analyses (rules/latents.smk) run when the config names an evaluation set.
EVALSET = config["evalset"]["dataset"] if "evalset" in config else None
EVALSETS = f"results/evalsets/{EVALSET}"
LATENTS = f"{RESULTS}/latents/{EVALSET}"
# Linear probes (rules/probes.smk) run when the config names probe tasks.
PROBES = f"{RESULTS}/probes"
PROBE_TASKS = sorted(config["probes"]["tasks"]) if "probes" in config else []
PROBE_FIGURES = ["fig4_probes_per_layer", "fig9_probe_coefficients"]
# figure target -> (key under latents.figures naming its sweep, the summaries it plots)
LATENT_FIGURES = {
    "fig3c_patterns_per_layer": ("per_layer", ["patterns"]),
    "fig3d_family_specific_per_layer": ("per_layer", ["family"]),
    "fig7a_k_sweep": ("k", ["family", "patterns"]),
    "fig7b_width_sweep": ("width", ["family", "patterns"]),
}

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


# Keys that say how a job runs, not what it computes: changing them must not rerun anything.
RESOURCE_KEYS = {"threads", "gpus", "mem_mb", "runtime"}


def settings(section, exclude=()):
    """A config section as a rule's params: canonical, without resource keys (or ``exclude``)."""
    return canonical({k: v for k, v in section.items() if k not in RESOURCE_KEYS and k not in exclude})


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


def sweep_specs(name):
    """The SAEs of one config sweep (its layers x k x width grid)."""
    sweep = sweep_config(name)
    return [
        dict(variant=sweep.get("variant", "topk"), layer=layer, k=k, width=width)
        for layer, k, width in itertools.product(sweep["layers"], sweep["k"], sweep["width"])
    ]


def sae_specs(names=None):
    """Every SAE the sweeps ask for (those named, or all), once: dicts with variant, layer, k, width."""
    specs = {}
    for name in names if names is not None else [sweep["name"] for sweep in config["sae"]["sweeps"]]:
        for spec in sweep_specs(name):
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
    targets += latent_targets()
    targets += probe_targets()
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


def evalset_codes(wc):
    """The code shards of the evaluation set under one SAE."""
    return [codes_path(EVALSET, wc.layer, wc.variant, wc.k, wc.width, s) for s in shard_ids(EVALSET)]


def latent_path(name, variant, layer, k, width):
    return f"{LATENTS}/layer{layer}/{spec_name(variant, layer, k, width)}/{name}"


def latent_targets():
    """Per-SAE latent tables, their summary and the latent figures (nothing without an evalset)."""
    if EVALSET is None:
        return []
    targets = [
        latent_path(name, **spec)
        for spec in sae_specs()
        for name in ("family_f1.tsv", "gap_candidates.tsv", "patterns.tsv")
    ]
    targets.append(f"{LATENTS}/summary.tsv")
    targets += [f"{RESULTS}/figures/{figure}.png" for figure in LATENT_FIGURES if latent_figure_sweep(figure)]
    return targets


def family_label_inputs(wc):
    """The files the label sources read, the entry table, and the representatives they label."""
    families = config["families"]
    inputs = {"representatives": f"{EVALSETS}/representatives.fasta", "entries": families["entries"]}
    inputs["sources"] = [source["path"] for source in families["sources"]]
    if families["pfam2interpro"]:
        inputs["pfam2interpro"] = families["pfam2interpro"]
    return inputs


def latent_figure_sweep(figure):
    """The sweep a latent figure plots (None when the config leaves the figure out)."""
    return config["latents"]["figures"][LATENT_FIGURES[figure][0]]


def latent_figure_specs(figure):
    return sweep_specs(latent_figure_sweep(figure))


def latent_figure_inputs(wc):
    """Only the summaries of the SAEs in the figure's sweep, so one figure rebuilds alone."""
    kinds = LATENT_FIGURES[wc.figure][1]
    return {
        kind: [latent_path(f"{kind}_summary.json", **spec) for spec in latent_figure_specs(wc.figure)]
        for kind in kinds
    }


def probe_task_config(task):
    try:
        return config["probes"]["tasks"][task]
    except KeyError:
        raise ValueError(f"no probe task {task!r} under probes.tasks (have: {PROBE_TASKS})") from None


def probe_dataset(task):
    return f"probe_{task}"


def probe_task_inputs(wc):
    """The files a task's loader reads: every value under its ``data`` whose key ends in path(s)."""
    inputs = []
    for key, value in probe_task_config(wc.task)["data"].items():
        if key.endswith("path"):
            inputs.append(value)
        elif key.endswith("paths"):
            inputs += list(value.values()) if isinstance(value, dict) else list(value)
    return {"data": inputs}


def spec_name(variant, layer, k, width):
    return f"{variant}_k{k}_w{width}"


def parse_spec_name(name, layer):
    variant, k, width = re.fullmatch(r"(.+)_k(\d+)_w(\d+)", name).groups()
    return dict(variant=variant, layer=int(layer), k=int(k), width=int(width))


def probe_sae_specs():
    """The SAEs whose latents are probed: those of probes.sweeps (all sweeps when null)."""
    return sae_specs(config["probes"]["sweeps"])


def probe_fits():
    """(task, layer, features) of every probe: raw activations at every layer, and every probed SAE."""
    fits = [(task, layer, "raw") for task in PROBE_TASKS for layer in LAYERS]
    fits += [(task, spec["layer"], spec_name(**spec)) for task in PROBE_TASKS for spec in probe_sae_specs()]
    return fits


def probe_path(task, layer, features, name):
    return f"{PROBES}/{task}/layer{layer}/{features}/{name}"


def probe_targets():
    if not PROBE_TASKS:
        return []
    targets = [probe_path(*fit, "top_coefficients.tsv") for fit in probe_fits()]
    targets.append(f"{PROBES}/summary.tsv")
    if config["probes"]["figure_sweep"]:
        targets += [f"{RESULTS}/figures/{figure}.png" for figure in PROBE_FIGURES]
    return targets


def probe_fit_inputs(wc):
    dataset = probe_dataset(wc.task)
    inputs = {
        "labels": f"results/probes/{wc.task}/labels.tsv",
        "lengths": f"{RESULTS}/sequences/{dataset}/lengths.tsv",
        "sequences": f"{RESULTS}/sequences/{dataset}/sample.fasta",
    }
    if wc.features == "raw":
        inputs["activations"] = [
            f"{RESULTS}/activations/{dataset}/layer{wc.layer}/shard{s}.parquet" for s in shard_ids(dataset)
        ]
    else:
        spec = parse_spec_name(wc.features, wc.layer)
        inputs["codes"] = [codes_path(dataset, shard=s, **spec) for s in shard_ids(dataset)]
    return inputs


def probe_figure_fits():
    """(layer, features) pairs the probe figures compare: raw and the figure sweep's SAE per layer."""
    pairs = []
    for spec in sweep_specs(config["probes"]["figure_sweep"]):
        pairs += [(spec["layer"], "raw"), (spec["layer"], spec_name(**spec))]
    return pairs


def probe_figure_inputs(wc):
    """Fig 4: every layer's raw and SAE results; Fig 9: the coefficients at the deepest of them."""
    pairs = probe_figure_fits()
    if wc.figure == "fig4_probes_per_layer":
        return {"fits": [probe_path(task, *pair, "result.json") for task in PROBE_TASKS for pair in pairs]}
    deepest = max(layer for layer, _ in pairs)
    return {"fits": [probe_path(task, layer, features, "coef.npy") for task in PROBE_TASKS
                     for layer, features in pairs if layer == deepest]}


def _check_sweep_name(key, name):
    names = [sweep["name"] for sweep in config["sae"]["sweeps"]]
    if name not in names:
        raise ValueError(f"{key} is {name!r}, not a sweep name under sae.sweeps {sorted(names)}")


def _check_derived_dataset(name, fasta, owner, reader):
    """A dataset whose FASTA the workflow writes for ``owner`` (the config key it serves) must be
    declared under datasets, at that path, with every residue cached."""
    if name not in config["datasets"]:
        raise ValueError(f"{owner}: declare the dataset {name!r} under 'datasets' (fasta: {fasta})")
    dataset = config["datasets"][name]
    if dataset["fasta"] != fasta:
        raise ValueError(f"datasets.{name}.fasta must be {fasta!r} (the sequences of {owner})")
    if dataset["positions_per_sequence"] is not None:
        raise ValueError(f"datasets.{name}.positions_per_sequence must be null: {reader} read every residue")


def _check_probes():
    if config["probes"]["figure_sweep"] is not None:
        _check_sweep_name("probes.figure_sweep", config["probes"]["figure_sweep"])
    for sweep in config["probes"]["sweeps"] or []:
        _check_sweep_name("probes.sweeps", sweep)
    for task in PROBE_TASKS:
        _check_derived_dataset(probe_dataset(task), f"results/probes/{task}/sequences.fasta",
                               f"probes.tasks.{task}", "probes")


def _check_evalset():
    _check_derived_dataset(EVALSET, f"{EVALSETS}/representatives.fasta", f"evalset.dataset ({EVALSET!r})",
                           "the latent analyses")
    if "families" not in config:
        raise ValueError("evalset is set but 'families' is missing: the F1 sweep needs family labels")
    for key, sweep in config["latents"]["figures"].items():
        if sweep is not None:
            _check_sweep_name(f"latents.figures.{key}", sweep)


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
    if EVALSET is not None:
        _check_evalset()
    if PROBE_TASKS:
        _check_probes()


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
