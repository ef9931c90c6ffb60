# Config look-ups and input functions shared by the stage rules. Nothing heavy is imported here
# (no torch, pyarrow or transformers), so building the DAG of a paper-scale config takes seconds.
import functools
import itertools
import os
import re
import sys

from protsae.activations.sizes import human_bytes, model_shape, projected_cache_bytes
from protsae.spec import (PUBLISHED_SWEEP, SAE_FOLDER, Layout, SAESpec, published_files, published_spec,
                          task_data_paths)

MODEL = config["model"]["name"]
# Width, depth and length limit of the model, from its config alone (no weights are loaded).
MODEL_SHAPE = model_shape(config["model"])
LAYOUT = Layout(MODEL)
RESULTS = LAYOUT.results
LOGS = LAYOUT.logs
LAYERS = sorted(config["layers"])
TRAIN_DATASET = config["sae"]["train_dataset"]
# Published SAEs (sae.published): imported, not trained, into the folders a trained SAE would have.
PUBLISHED = config["sae"]["published"]
# The latent analyses (rules/latents.smk) run when the config names an evaluation set.
EVALSET = config["evalset"]["dataset"] if "evalset" in config else None
EVALSETS = LAYOUT.evalset(EVALSET)
REPRESENTATIVES = f"{EVALSETS}/representatives.fasta"
LATENTS = LAYOUT.latents_root(EVALSET)
# Linear probes (rules/probes.smk) run when the config names probe tasks.
PROBE_TASKS = sorted(config["probes"]["tasks"]) if "probes" in config else []
PROBE_FIGURES = ["fig4_probes_per_layer", "fig9_probe_coefficients"]
# figure target -> (key under latents.figures naming its sweep, the summaries it plots)
LATENT_FIGURES = {
    "fig3c_patterns_per_layer": ("per_layer", ["patterns"]),
    "fig3d_family_specific_per_layer": ("per_layer", ["family"]),
    "fig7a_k_sweep": ("k", ["family", "patterns"]),
    "fig7b_width_sweep": ("width", ["family", "patterns"]),
}

# The latent browser (rules/browser.smk) is built when the config names an evaluation set.
BROWSER = config["browser"] if EVALSET is not None and config["browser"]["enabled"] else None
STRUCTURES = BROWSER["structures"] if BROWSER else None
STRUCTURE_DATASET = STRUCTURES["dataset"] if STRUCTURES else None

# The characters of a dataset name (config/schema.yaml says the same of evalset.dataset).
DATASET_CHAR = "[A-Za-z0-9_.-]"

wildcard_constraints:
    dataset=f"{DATASET_CHAR}+",
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


# Keys that say how or where a job runs, not what it computes: changing them reruns nothing. Rule
# scripts read them from snakemake.config; params (Snakemake's rerun trigger) leave them out.
RUNTIME_KEYS = {"threads", "gpus", "mem_mb", "runtime", "device", "allow_download"}


def memory(mb):
    """A rule's ``mem_mb``: ``mb`` on the first attempt and ``mb`` times the attempt on a retry, so a
    job killed for memory is resubmitted with more (the SLURM profile retries twice)."""
    return lambda wildcards, attempt: mb * attempt


def settings(section, exclude=()):
    """A config section as a rule's params: canonical, without runtime keys (or ``exclude``)."""
    return canonical({k: v for k, v in section.items() if k not in RUNTIME_KEYS and k not in exclude})


def model_settings():
    """The model keys that change what it computes (weights, precision, length limit)."""
    return settings(config["model"], exclude={"name"})


def model_identity():
    """The model keys that decide which weights are read (and so its alphabet)."""
    return canonical({k: v for k, v in config["model"].items() if k in ("kind", "id", "path", "size", "seed")})


# Datasets the workflow writes itself: the evaluation set's representatives (evalset) and each probe
# task's sequences (probes.tasks). They are declared once, where they are made; these entries join
# them to the user's datasets, with every residue cached.
def _derived_datasets():
    derived = {}
    if "evalset" in config:
        evalset = config["evalset"]
        derived[EVALSET] = dict(
            fasta=REPRESENTATIVES, max_length=evalset["max_length"],
            min_length=evalset["min_length"], **evalset["sample"], key="evalset.sample",
        )
    for task in PROBE_TASKS:
        task_config = config["probes"]["tasks"][task]
        sample = dict(task_config["sample"])
        if sample["n_sequences"] is None:
            sample["n_sequences"] = task_config["max_items"] or 1_000_000
        # The paper's 1022 residues, or fewer where the model accepts fewer.
        max_length = min(1022, MODEL_SHAPE.max_residues or 1022)
        derived[probe_dataset(task)] = dict(fasta=f"{LAYOUT.probe_task(task)}/sequences.fasta", max_length=max_length,
                                            min_length=1, **sample, key=f"probes.tasks.{task}.sample")
    for name, dataset in derived.items():
        key = dataset.pop("key")
        if name in config["datasets"]:
            raise ValueError(f"datasets.{name}: the workflow makes this dataset ({key}); remove it from 'datasets'")
        config["datasets"][name] = dataset | {"alphabet_policy": "map_to_unknown", "positions_per_sequence": None}


def dataset_key(name):
    """Where the config declares a dataset's settings (the derived ones: under evalset or probes)."""
    if name == EVALSET:
        return "evalset"
    if name in PROBE_DATASETS:
        return f"probes.tasks.{PROBE_DATASETS[name]}.sample"
    return f"datasets.{name}"


def probe_dataset(task):
    return f"probe_{task}"


# Each probe task's dataset -> the task.
PROBE_DATASETS = {probe_dataset(task): task for task in PROBE_TASKS}


def dataset_config(dataset):
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise ValueError(
            f"no dataset {dataset!r} under 'datasets' in the config (have: {sorted(config['datasets'])})"
        ) from None


def shard_ids(dataset):
    return range(dataset_config(dataset)["n_shards"])


def sweep_config(name):
    for sweep in config["sae"]["sweeps"]:
        if sweep["name"] == name:
            return sweep
    raise ValueError(f"no sweep named {name!r} under sae.sweeps")


# The sweep look-ups are cached (the config is fixed once the DAG is built): a paper config's input
# functions ask for them thousands of times. They return tuples, so no caller can change the cache.
@functools.cache
def sweep_specs(name):
    """The SAEs of one config sweep (its layers x k x width grid), or the published SAEs."""
    if name == PUBLISHED_SWEEP and PUBLISHED:
        return tuple(published_spec(entry, TRAIN_DATASET) for entry in PUBLISHED)
    sweep = sweep_config(name)
    return tuple(
        SAESpec(variant=sweep["variant"], layer=layer, k=k, width=width, dataset=TRAIN_DATASET)
        for layer, k, width in itertools.product(sweep["layers"], sweep["k"], sweep["width"])
    )


def sweep_names():
    """The config's sweeps, and the published SAEs' pseudo-sweep when there are any."""
    return [sweep["name"] for sweep in config["sae"]["sweeps"]] + ([PUBLISHED_SWEEP] if PUBLISHED else [])


def sae_specs(names=None):
    """Every SAE the sweeps ask for (those named, or all, the published ones last), once, in the
    order the sweeps list them."""
    return _sae_specs(tuple(names if names is not None else sweep_names()))


@functools.cache
def _sae_specs(names):
    return tuple(dict.fromkeys(spec for name in names for spec in sweep_specs(name)))


def plotted_sweeps():
    """Sweeps with something to plot: more than one layer, k or width."""
    return [s for s in config["sae"]["sweeps"] if max(len(s["layers"]), len(s["k"]), len(s["width"])) > 1]


def wildcard_spec(wc):
    """The SAE of a rule job whose wildcards are those of SAE_FOLDER."""
    return SAESpec.from_wildcards(wc, dataset=TRAIN_DATASET)


def sae_file(spec, name):
    return f"{LAYOUT.sae(spec)}/{name}"


def all_targets():
    targets = [f"{LAYOUT.activations(TRAIN_DATASET, layer)}/manifest.json" for layer in LAYERS]
    targets += [sae_file(spec, "metrics.json") for spec in sae_specs()]
    targets.append(f"{RESULTS}/sae/{TRAIN_DATASET}/summary.tsv")
    targets += [LAYOUT.figure(f"sae_sweep_{sweep['name']}") for sweep in plotted_sweeps()]
    targets += encoding_targets()
    targets += latent_targets()
    targets += steering_targets()
    targets += probe_targets()
    targets += browser_targets()
    targets += concept_targets()
    targets += network_targets()
    targets += head_targets()
    return targets


def code_shards(dataset, spec):
    """The code shards of ``dataset`` under one SAE (the files in its folder, LAYOUT.codes, which is
    what the rules track)."""
    return [f"{LAYOUT.codes(dataset, spec)}/shard{shard}.parquet" for shard in shard_ids(dataset)]


def encoding_targets():
    """Sparse latent codes of every SAE over every dataset listed under encode.datasets."""
    return [LAYOUT.codes(dataset, spec) for dataset in config["encode"]["datasets"] for spec in sae_specs()]


def maxima_file(spec):
    """The per-protein maxima of the evaluation set under one SAE (written by its encoding job)."""
    return f"{LAYOUT.latents(EVALSET, spec)}/maxima.npz"


def evalset_codes(wc):
    """The folder of the code shards of the evaluation set under one SAE."""
    return LAYOUT.codes(EVALSET, wildcard_spec(wc))


def evalset_code_shards(wc):
    """The files in that folder."""
    return code_shards(EVALSET, wildcard_spec(wc))


def encoded_specs():
    """Dataset -> the SAEs whose codes of it are needed: every SAE over encode.datasets and the
    evaluation set, the probed SAEs over each probe task."""
    needed = {dataset: sae_specs() for dataset in config["encode"]["datasets"]}
    if EVALSET is not None:
        needed[EVALSET] = sae_specs()
    for task in PROBE_TASKS:
        needed[probe_dataset(task)] = list(dict.fromkeys([*needed.get(probe_dataset(task), []), *probe_sae_specs()]))
    if STRUCTURE_DATASET is not None:
        needed[STRUCTURE_DATASET] = sae_specs()
    for dataset in CONCEPT_DATASETS:
        needed[dataset] = sae_specs()
    return needed


def encode_source(dataset):
    """cache, or model for a dataset the workflow would cache only to encode it."""
    cached_anyway = dataset == TRAIN_DATASET or dataset in PROBE_DATASETS
    return "cache" if cached_anyway else config["encode"]["source"]


def encode_groups():
    """One encoding job's worth each: (dataset, layers, SAEs of those layers), one per SAE, per
    layer or per dataset as encode.group_by says."""
    groups = []
    for dataset, specs in encoded_specs().items():
        if config["encode"]["group_by"] == "sae":
            groups += [(dataset, [spec.layer], [spec]) for spec in specs]
            continue
        layers = sorted({spec.layer for spec in specs})
        parts = [[layer] for layer in layers] if config["encode"]["group_by"] == "layer" else [layers]
        groups += [(dataset, part, [spec for spec in specs if spec.layer in part]) for part in parts]
    return groups


def encode_group_name(dataset, layers, specs):
    """The group's name in its rule's name and its log's path."""
    if config["encode"]["group_by"] == "sae":
        return f"{dataset}_layer{specs[0].layer}_{specs[0].name}"
    span = f"layer{layers[0]}" if len(layers) == 1 else f"layers{layers[0]}-{layers[-1]}"
    return f"{dataset}_{span}"


def intermediate(dataset):
    """Whether ``dataset``'s per-residue files (its dense cache, its code shards) are intermediate:
    with keep_intermediates false, those of the evaluation set and the probe tasks, which later jobs
    only condense (maxima, patterns, probe features). The training cache and every dataset listed
    under encode.datasets are always kept."""
    derived = dataset == EVALSET or dataset in PROBE_DATASETS
    return not config["keep_intermediates"] and derived and dataset not in config["encode"]["datasets"]


def intermediate_pattern():
    """A ``dataset`` wildcard pattern matching the intermediate datasets (or nothing)."""
    names = sorted(name for name in config["datasets"] if intermediate(name))
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


def kept_pattern():
    """A ``dataset`` wildcard pattern matching every other dataset: a name that does not start
    with an intermediate one followed by the end of the name."""
    return f"(?!(?:{intermediate_pattern()})(?!{DATASET_CHAR})){DATASET_CHAR}+"


def activation_shards(dataset):
    """The caching jobs' folders of ``dataset`` (what the rules track)."""
    return [LAYOUT.activation_shard(dataset, shard) for shard in shard_ids(dataset)]


def activation_files(dataset, layer):
    """One layer's file in each of those folders (what the scripts read)."""
    return [LAYOUT.activation_file(dataset, shard, layer) for shard in shard_ids(dataset)]


def encode_group_inputs(dataset, layers, specs):
    inputs = {"weights": [sae_file(spec, "sae.safetensors") for spec in specs],
              "configs": [sae_file(spec, "config.json") for spec in specs]}
    if encode_source(dataset) == "cache":
        inputs["activations"] = activation_shards(dataset)
        inputs["manifests"] = [f"{LAYOUT.activations(dataset, layer)}/manifest.json" for layer in layers]
    else:
        inputs["sequences"] = f"{LAYOUT.sequences(dataset)}/shards"
    return inputs


def steering_targets():
    """Every SAE's steering tables, their summary and Fig 6 (with an evalset and steering.enabled)."""
    if EVALSET is None or not config["steering"]["enabled"]:
        return []
    return [f"{LAYOUT.steering(EVALSET, spec)}/metrics.tsv" for spec in sae_specs()] + [
        f"{RESULTS}/steering/{EVALSET}/summary.tsv", LAYOUT.figure("fig6_steering")]


def browser_targets():
    """The site's index (which needs every SAE's pages)."""
    return [f"{LAYOUT.browser}/index.html"] if BROWSER else []


def browser_datasets():
    """The datasets whose proteins the site shows: the evaluation set and the structure dataset."""
    return list(dict.fromkeys([EVALSET] + ([STRUCTURE_DATASET] if STRUCTURE_DATASET else [])))


def examples_file(dataset, spec, name="examples.parquet"):
    return f"{LAYOUT.examples(dataset, spec)}/{name}"


def browser_examples_inputs(wc):
    """One SAE's codes of the dataset, its sequence lengths, and the matched structures when the
    dataset is the structure dataset."""
    inputs = {"codes": LAYOUT.codes(wc.dataset, wildcard_spec(wc)), "lengths": f"{LAYOUT.sequences(wc.dataset)}/lengths.tsv"}
    if wc.dataset == STRUCTURE_DATASET:
        inputs["structures"] = f"{RESULTS}/browser_data/structures.npz"
    return inputs


def browser_sae_inputs(wc):
    """What one SAE's pages show: its examples, latent tables, probe coefficients and steering."""
    spec = wildcard_spec(wc)
    inputs = {
        "examples": examples_file(EVALSET, spec), "overview": examples_file(EVALSET, spec, "overview.parquet"),
        "family": latent_path("family_f1.tsv", spec), "patterns": latent_path("patterns.tsv", spec),
        "gaps": latent_path("gap_candidates.tsv", spec), "chunks": f"{LAYOUT.browser}/proteins",
    }
    if STRUCTURE_DATASET:
        inputs["structures"] = examples_file(STRUCTURE_DATASET, spec)
    if spec in probe_sae_specs():
        inputs["probes"] = [probe_path(task, spec.layer, spec.name, "top_coefficients.tsv") for task in PROBE_TASKS]
    if network_neighbours(spec):
        inputs["neighbours"] = network_neighbours(spec)
    if config["steering"]["enabled"]:
        inputs["steering"] = [f"{LAYOUT.steering(EVALSET, spec)}/{name}.tsv"
                              for name in ("latents", "metrics", "alignment_rows", "alignment_columns")]
    return inputs


def latent_path(name, spec):
    return f"{LAYOUT.latents(EVALSET, spec)}/{name}"


def latent_targets():
    """Per-SAE latent tables, their summary and the latent figures (nothing without an evalset)."""
    if EVALSET is None:
        return []
    targets = [
        latent_path(name, spec)
        for spec in sae_specs()
        for name in ("family_f1.tsv", "gap_candidates.tsv", "patterns.tsv")
    ]
    targets.append(f"{LATENTS}/summary.tsv")
    targets += [LAYOUT.figure(figure) for figure in LATENT_FIGURES if latent_figure_sweep(figure)]
    return targets


def family_label_inputs(wc):
    """The files the label sources read, the entry table, and the representatives they label."""
    families = config["families"]
    inputs = {"representatives": REPRESENTATIVES, "entries": families["entries"]}
    inputs["sources"] = [source["path"] for source in families["sources"]]
    if families["pfam2interpro"]:
        inputs["pfam2interpro"] = families["pfam2interpro"]
    return inputs


def latent_figure_sweep(figure):
    """The sweep a latent figure plots (None when the config leaves the figure out)."""
    return config["latents"]["figures"][LATENT_FIGURES[figure][0]]


def latent_figure_inputs(wc):
    """Only the summaries of the SAEs in the figure's sweep, so one figure rebuilds alone."""
    kinds = LATENT_FIGURES[wc.figure][1]
    specs = sweep_specs(latent_figure_sweep(wc.figure))
    return {kind: [latent_path(f"{kind}_summary.json", spec) for spec in specs] for kind in kinds}


def probe_task_config(task):
    try:
        return config["probes"]["tasks"][task]
    except KeyError:
        raise ValueError(f"no probe task {task!r} under probes.tasks (have: {PROBE_TASKS})") from None


def probe_task_settings(task):
    """A task's params: what its loader, split and probe compute from (not how it is cached)."""
    return settings(probe_task_config(task), exclude={"sample"})


def probe_task_inputs(wc):
    """The files a task's loader reads."""
    return {"data": task_data_paths(probe_task_config(wc.task)["data"])}


def probe_sae_specs():
    """The SAEs whose latents are probed: those of probes.sweeps (all sweeps when null)."""
    return sae_specs(config["probes"]["sweeps"])


@functools.cache
def _probed_by_name():
    return {(spec.layer, spec.name): spec for spec in probe_sae_specs()}


def probe_fits():
    """(task, layer, features) of every probe: raw activations at every layer, and every probed SAE."""
    fits = [(task, layer, "raw") for task in PROBE_TASKS for layer in LAYERS]
    fits += [(task, spec.layer, spec.name) for task in PROBE_TASKS for spec in probe_sae_specs()]
    return fits


def probe_path(task, layer, features, name):
    return f"{LAYOUT.probe(task, layer, features)}/{name}"


def probe_targets():
    if not PROBE_TASKS:
        return []
    targets = [probe_path(*fit, "top_coefficients.tsv") for fit in probe_fits()]
    targets.append(f"{RESULTS}/probes/summary.tsv")
    if config["probes"]["figure_sweep"]:
        targets += [LAYOUT.figure(figure) for figure in PROBE_FIGURES]
    # Sparse probing's targets (rules/probes.smk, included whenever PROBE_TASKS is not empty).
    targets += sparse_probe_targets()
    return targets


def probe_fit_spec(wc):
    """The SAE whose latents a probe job reads (None for raw activations)."""
    if wc.features == "raw":
        return None
    spec = _probed_by_name().get((int(wc.layer), wc.features))
    if spec is not None:
        return spec
    raise ValueError(f"probe features {wc.features!r} at layer {wc.layer} are not an SAE of probes.sweeps")


def probe_fit_inputs(wc):
    dataset = probe_dataset(wc.task)
    inputs = {
        "labels": f"{LAYOUT.probe_task(wc.task)}/labels.tsv",
        "lengths": f"{LAYOUT.sequences(dataset)}/lengths.tsv",
        "sequences": f"{LAYOUT.sequences(dataset)}/sample.fasta",
    }
    spec = probe_fit_spec(wc)
    if spec is None:
        inputs["activations"] = activation_shards(dataset)
        inputs["manifest"] = f"{LAYOUT.activations(dataset, wc.layer)}/manifest.json"
    else:
        inputs["codes"] = LAYOUT.codes(dataset, spec)
    return inputs


def probe_fit_shards(wc):
    """The files a probe job reads: its layer's file of every cached shard, or its SAE's code shards."""
    spec = probe_fit_spec(wc)
    dataset = probe_dataset(wc.task)
    return activation_files(dataset, wc.layer) if spec is None else code_shards(dataset, spec)


def probe_figure_fits():
    """(layer, features) pairs the probe figures compare: raw and the figure sweep's SAE per layer."""
    pairs = []
    for spec in sweep_specs(config["probes"]["figure_sweep"]):
        pairs += [(spec.layer, "raw"), (spec.layer, spec.name)]
    return pairs


def probe_figure_inputs(wc):
    """Fig 4: every layer's raw and SAE results; Fig 9: the coefficients at the deepest of them,
    each with the result that says which fit it is."""
    pairs = probe_figure_fits()
    if wc.figure == "fig4_probes_per_layer":
        return {"fits": [probe_path(task, *pair, "result.json") for task in PROBE_TASKS for pair in pairs]}
    deepest = max(layer for layer, _ in pairs)
    fits = [(task, layer, features) for task in PROBE_TASKS for layer, features in pairs if layer == deepest]
    return {"fits": [probe_path(*fit, "result.json") for fit in fits],
            "coefs": [probe_path(*fit, "coef.npy") for fit in fits]}


# Concept coverage (rules/concepts.smk): every SAE and the raw dimensions of every layer, over the
# datasets named under concepts.datasets (the evaluation set, probe tasks' datasets).
CONCEPT_DATASETS = sorted(config["concepts"]["datasets"]) if EVALSET is not None else []
CONCEPT_FIGURE = "fig10_concept_coverage"


def concept_split_source(dataset):
    """The file whose train/valid/test split a dataset's concept split follows."""
    if dataset == EVALSET:
        return f"{LATENTS}/split.tsv"
    return f"{LAYOUT.probe_task(PROBE_DATASETS[dataset])}/labels.tsv"


def concept_table_inputs(wc):
    entry = config["concepts"]["datasets"][wc.dataset]
    return {"sequences": f"{LAYOUT.sequences(wc.dataset)}/sample.fasta",
            "split": concept_split_source(wc.dataset),
            "sources": [source["path"] for source in entry["sources"]]}


# What a concept sweep's numbers depend on, the same for the SAE latents and the raw dimensions.
CONCEPT_SWEEP = canonical({k: config["concepts"][k] for k in ("thresholds", "f1_cutoff", "min_residues", "min_instances")})


def concept_pairs(folder, dataset="{dataset}"):
    """One dataset's best pairs in a units' concept folder (LAYOUT.concepts, LAYOUT.concepts_raw),
    which a sweep job writes and the folder's merge reads."""
    return f"{folder}/{dataset}_pairs.parquet"


def concept_sweep_inputs(wc):
    """One (SAE, concept dataset) sweep job's inputs: the dataset's concepts and split, the SAE's
    codes of that dataset and its config."""
    spec = wildcard_spec(wc)
    return {"concepts": f"{LAYOUT.concept_dataset(wc.dataset)}/concepts.tsv.gz",
            "split": f"{LAYOUT.concept_dataset(wc.dataset)}/split.tsv",
            "codes": LAYOUT.codes(wc.dataset, spec), "config": sae_file(spec, "config.json")}


def concept_outputs(spec_or_layer, name):
    folder = LAYOUT.concepts_raw(spec_or_layer) if isinstance(spec_or_layer, int) else LAYOUT.concepts(spec_or_layer)
    return f"{folder}/{name}"


def concept_figure_sweeps():
    """The figure's panels: (swept quantity, sweep name), those the config leaves in, in a fixed
    order (not the config's key order, which a rewritten config file may change)."""
    figure = config["concepts"]["figure"]
    return [(key, figure[key]) for key in ("per_layer", "k", "width") if figure.get(key) is not None]


def concept_figure_inputs(wc):
    inputs = {f"sae_{key}": [concept_outputs(spec, "coverage.json") for spec in sweep_specs(sweep)]
              for key, sweep in concept_figure_sweeps()}
    if config["concepts"]["raw"]:
        inputs["raw"] = [concept_outputs(layer, "coverage.json") for layer in LAYERS]
    return inputs


def concept_targets():
    if not CONCEPT_DATASETS:
        return []
    targets = [concept_outputs(spec, "best_pairs.tsv") for spec in sae_specs()]
    targets += [concept_outputs(layer, "best_pairs.tsv") for layer in LAYERS] if config["concepts"]["raw"] else []
    targets.append(f"{RESULTS}/concepts/summary.tsv")
    if concept_figure_sweeps():
        targets.append(LAYOUT.figure(CONCEPT_FIGURE))
    return targets


def published_entry(wc):
    """The sae.published entry of an import job (its place in the config, the entry)."""
    for index, entry in enumerate(PUBLISHED):
        if entry["name"] == wc.variant:
            spec = published_spec(entry, TRAIN_DATASET)
            if SAESpec.from_wildcards(wc) != spec:
                raise ValueError(f"sae.published[{index}] ({entry['name']!r}) is {spec.folder} of {spec.dataset}, "
                                 f"not layer{wc.layer}/{wc.variant}_k{wc.k}_w{wc.width} of {wc.dataset}")
            return f"sae.published[{index}]", entry
    raise ValueError(f"{wc.variant!r} is not the name of an entry of sae.published")


def published_inputs(wc):
    """An import job's inputs: the checkpoint's files and the training cache at its layer."""
    _, entry = published_entry(wc)
    return {"checkpoint": published_files(entry), "manifest": f"{LAYOUT.activations(wc.dataset, wc.layer)}/manifest.json"}


def published_variants():
    """A ``variant`` wildcard pattern matching the published SAEs' names (or nothing)."""
    return "|".join(re.escape(entry["name"]) for entry in PUBLISHED) or "(?!)"


# Sparse probing (rules/probes.smk): per (task, layer, features) like the probes, over the
# protein-classifier probe tasks and the evaluation set's largest families ("families").
SPARSE = config["probes"]["sparse"] if "probes" in config else None
SPARSE_FAMILIES = "families"




def sparse_tasks():
    """The tasks sparse probing covers: the probe tasks it names (all protein classifiers when
    probes.sparse.tasks is null), and the evaluation set's families when n_families > 0."""
    if not PROBE_TASKS or not SPARSE["enabled"]:
        return []
    classifiers = [task for task in PROBE_TASKS if probe_task_config(task)["probe"] == "protein_classifier"]
    named = SPARSE["tasks"]
    if named is not None:
        wrong = sorted(set(named) - set(classifiers))
        if wrong:
            raise ValueError(f"probes.sparse.tasks: {wrong} are not protein_classifier tasks under probes.tasks "
                             f"(have: {classifiers})")
    tasks = [task for task in classifiers if named is None or task in named]
    if SPARSE_FAMILIES in PROBE_TASKS:
        raise ValueError(f"probes.tasks: the name {SPARSE_FAMILIES!r} is taken by sparse probing's family task")
    if EVALSET is not None and SPARSE["n_families"] > 0:
        tasks.append(SPARSE_FAMILIES)
    return tasks


def sparse_raw(task):
    """Whether a sparse task is also probed on raw dimensions: always for probe tasks (cached
    anyway); for the families, as probes.sparse.families_raw says (auto: when the evaluation set's
    activations are cached anyway, i.e. encode.source is cache)."""
    if task != SPARSE_FAMILIES:
        return True
    return SPARSE["families_raw"] == "always" or (SPARSE["families_raw"] == "auto" and encode_source(EVALSET) == "cache")


def sparse_fits():
    """(task, layer, features) of every sparse probe: raw dimensions per layer, every probed SAE."""
    fits = []
    for task in sparse_tasks():
        if sparse_raw(task):
            fits += [(task, layer, "raw") for layer in LAYERS]
        fits += [(task, spec.layer, spec.name) for spec in probe_sae_specs()]
    return fits


def sparse_path(task, layer, features, name):
    return f"{RESULTS}/sparse_probes/{task}/layer{layer}/{features}/{name}"


def sparse_probe_targets():
    fits = sparse_fits()
    if not fits:
        return []
    return [sparse_path(*fit, "result.json") for fit in fits] + [f"{RESULTS}/sparse_probes/summary.tsv"]


def sparse_dataset(wc):
    return EVALSET if wc.task == SPARSE_FAMILIES else probe_dataset(wc.task)


def sparse_probe_inputs(wc):
    dataset = sparse_dataset(wc)
    if wc.task == SPARSE_FAMILIES:
        inputs = {"labels": f"{EVALSETS}/families.tsv", "split": f"{LATENTS}/split.tsv"}
    else:
        inputs = {"labels": f"{LAYOUT.probe_task(wc.task)}/labels.tsv",
                  "lengths": f"{LAYOUT.sequences(dataset)}/lengths.tsv"}
    spec = probe_fit_spec(wc)
    if spec is None:
        inputs["activations"] = activation_shards(dataset)
        inputs["manifest"] = f"{LAYOUT.activations(dataset, wc.layer)}/manifest.json"
    else:
        inputs["codes"] = LAYOUT.codes(dataset, spec)
    return inputs


def sparse_params(wc):
    """What a sparse probe computes from: k and C, and for the families how they are chosen."""
    keys = ("k", "C") + (("n_families", "min_positives") if wc.task == SPARSE_FAMILIES else ())
    return canonical({key: SPARSE[key] for key in keys})


def sparse_probe_shards(wc):
    """The files a sparse probe reads: its layer's file of every cached shard, or its SAE's code shards."""
    spec = probe_fit_spec(wc)
    dataset = sparse_dataset(wc)
    return activation_files(dataset, wc.layer) if spec is None else code_shards(dataset, spec)


# Feature networks (rules/networks.smk): the SAEs of one sweep, one per layer, over the evaluation set.
NETWORK_SWEEP = config["networks"]["sweep"] if EVALSET is not None else None
NETWORK = f"{RESULTS}/networks/{EVALSET}/{NETWORK_SWEEP}"
NETWORK_FIGURE = "fig11_feature_network"


@functools.cache
def layer_specs(sweep):
    """Layer -> the SAE of that layer in ``sweep``, one per layer (`_check_layer_sweep`); the
    networks and the heads read it from their input functions, once per job, so it is kept."""
    return {spec.layer: spec for spec in sweep_specs(sweep)}


def network_specs():
    """Layer -> the network sweep's SAE of that layer."""
    return layer_specs(NETWORK_SWEEP)


def network_pairs():
    """(source layer, target layer) of every pair's job: each layer with the next, and each layer
    with itself when networks.within_layer."""
    layers = sorted(network_specs())
    pairs = list(zip(layers, layers[1:]))
    if config["networks"]["within_layer"]:
        pairs += [(layer, layer) for layer in layers]
    return sorted(pairs)


def network_pair_file(pair, name):
    return f"{NETWORK}/pairs/layer{pair[0]}-layer{pair[1]}/{name}"


def network_pair_inputs(wc):
    specs = network_specs()
    source, target = specs[int(wc.source)], specs[int(wc.target)]
    inputs = {"source_sae": sae_file(source, "sae.safetensors"), "source_config": sae_file(source, "config.json"),
              "sequences": f"{LAYOUT.sequences(EVALSET)}/sample.fasta"}
    if target != source:
        inputs |= {"target_sae": sae_file(target, "sae.safetensors"), "target_config": sae_file(target, "config.json"),
                   "maxima": maxima_file(source), "family": latent_path("family_f1.tsv", source),
                   "probes": network_probe_files(source)}
    return inputs


def network_probe_files(spec):
    """The probes' top coefficients of one SAE's latents (none when its latents are not probed)."""
    if not PROBE_TASKS or spec not in probe_sae_specs():
        return []
    return [probe_path(task, spec.layer, spec.name, "top_coefficients.tsv") for task in PROBE_TASKS]


def network_neighbours(spec):
    """The neighbour lists of one SAE's latents (None when it is not in the network)."""
    if NETWORK_SWEEP is None or network_specs().get(spec.layer) != spec:
        return None
    return f"{NETWORK}/neighbours/layer{spec.layer}.json"


def network_folders(spec):
    """Layer (as text) -> the folder of the network's SAE there, when ``spec`` is in the network."""
    if not network_neighbours(spec):
        return {}
    return {str(layer): other.folder for layer, other in network_specs().items()}


def network_targets():
    if NETWORK_SWEEP is None:
        return []
    return [f"{NETWORK}/{name}" for name in ("edges.tsv.gz", "network.graphml", "summary.json")] + [
        LAYOUT.figure(NETWORK_FIGURE)]


# Attention heads in SAE features (rules/heads.smk): block l read through the sweep's SAEs at
# layers l - 1 (its input) and l (its output), for transformer models only.
TRANSFORMER_KINDS = ("esm2", "hf_masked_lm", "tiny_esm2", "antiberty")
HEADS_SWEEP = config["heads"]["sweep"] if config["model"]["kind"] in TRANSFORMER_KINDS else None
HEADS_DATASET = config["heads"]["dataset"] or EVALSET or TRAIN_DATASET
HEADS = f"{RESULTS}/heads/{HEADS_DATASET}/{HEADS_SWEEP}"
HEADS_FIGURE = "fig12_head_roles"


def head_specs():
    """Layer -> the heads sweep's SAE of that layer."""
    return layer_specs(HEADS_SWEEP)


def head_blocks():
    """The blocks whose input and output layers both have an SAE of the heads sweep, but ESM-2's
    (and other Hugging Face models') last, whose output layer is read after the final norm."""
    layers = set(head_specs())
    last = MODEL_SHAPE.n_layers if config["model"]["kind"] != "antiberty" else None
    return sorted(layer for layer in layers if layer - 1 in layers and layer != last)


def head_block_file(block, name):
    return f"{HEADS}/blocks/block{block}/{name}"


def head_block_inputs(wc):
    specs = head_specs()
    before, after = specs[int(wc.block) - 1], specs[int(wc.block)]
    return {"sae_a": sae_file(before, "sae.safetensors"), "config_a": sae_file(before, "config.json"),
            "sae_b": sae_file(after, "sae.safetensors"), "config_b": sae_file(after, "config.json"),
            "sequences": f"{LAYOUT.sequences(HEADS_DATASET)}/sample.fasta"}


def head_targets():
    if HEADS_SWEEP is None:
        return []
    return [f"{HEADS}/{name}" for name in ("heads.tsv", "summary.json")] + [LAYOUT.figure(HEADS_FIGURE)]


def _check_heads():
    if HEADS_SWEEP is None:
        return
    layers = _check_layer_sweep("heads.sweep", HEADS_SWEEP)
    if HEADS_DATASET not in (*config["datasets"], EVALSET, *PROBE_DATASETS):
        raise ValueError(f"heads.dataset is {HEADS_DATASET!r}: not a key of 'datasets', the evaluation set or a "
                         f"probe task's dataset")
    if not head_blocks():
        raise ValueError(f"heads.sweep: sweep {HEADS_SWEEP!r} has layers {sorted(layers)}; the head analysis needs "
                         f"two adjacent layers (a block's input l - 1 and output l), or set heads.sweep: null")


def _check_network():
    if NETWORK_SWEEP is None:
        return
    layers = _check_layer_sweep("networks.sweep", NETWORK_SWEEP)
    if len(layers) < 2 and not config["networks"]["within_layer"]:
        raise ValueError(f"networks.sweep: sweep {NETWORK_SWEEP!r} has one layer and networks.within_layer is false: "
                         f"no edges to compute")


def _check_layer_sweep(key, name):
    """The layers of sweep ``name`` (config key ``key``), which must exist and hold one SAE per
    layer (one k and one width)."""
    _check_sweep_name(key, name)
    layers = [spec.layer for spec in sweep_specs(name)]
    if len(set(layers)) != len(layers):
        raise ValueError(f"{key}: sweep {name!r} has more than one SAE per layer (one k and one width)")
    return layers


def _check_sweep_name(key, name):
    names = sweep_names()
    if name not in names:
        raise ValueError(f"{key} is {name!r}, not a sweep name under sae.sweeps {sorted(names)}")


def _check_published():
    """Some SAE to characterise, and in sae.published: unique names unlike the sweeps' variants and
    sweep names, cached layers, k within the width, and the checkpoint files present (their
    shapes are checked on import)."""
    if not PUBLISHED and not config["sae"]["sweeps"]:
        raise ValueError("sae.sweeps is empty and sae.published names no SAE: there is no SAE to characterise")
    if PUBLISHED and PUBLISHED_SWEEP in [sweep["name"] for sweep in config["sae"]["sweeps"]]:
        raise ValueError(f"sae.sweeps: the name {PUBLISHED_SWEEP!r} is that of the SAEs of sae.published; rename the sweep")
    variants = {sweep["variant"] for sweep in config["sae"]["sweeps"]} | {"topk", "batchtopk", "matryoshka", "relu_l1"}
    seen = set()
    for index, entry in enumerate(PUBLISHED):
        key = f"sae.published[{index}]"
        if entry["name"] in seen:
            raise ValueError(f"{key}.name: {entry['name']!r} names two entries of sae.published")
        if entry["name"] in variants:
            raise ValueError(f"{key}.name: {entry['name']!r} is an SAE variant's name; choose another")
        seen.add(entry["name"])
        if entry["layer"] not in LAYERS:
            raise ValueError(f"{key}.layer is {entry['layer']}, which 'layers' does not cache ({LAYERS})")
        if entry["k"] > entry["width"]:
            raise ValueError(f"{key}: k={entry['k']} exceeds width={entry['width']}")
        missing = [path for path in published_files(entry) if not os.path.isfile(path)]
        if missing:
            raise ValueError(f"{key}.path: the {entry['layout']} SAE {entry['name']!r} has no file {', '.join(missing)}")


def _check_config():
    beyond = [layer for layer in LAYERS if MODEL_SHAPE.n_layers is not None and layer > MODEL_SHAPE.n_layers]
    if beyond:
        raise ValueError(
            f"layers: {beyond} beyond model {MODEL}, which has {MODEL_SHAPE.n_layers} blocks (layers 0..{MODEL_SHAPE.n_layers})"
        )
    names = [sweep["name"] for sweep in config["sae"]["sweeps"]]
    if len(set(names)) != len(names):
        raise ValueError(f"sae.sweeps: sweep names must be unique, got {names}")
    _check_published()
    for dataset in config["encode"]["datasets"]:
        dataset_config(dataset)
    if TRAIN_DATASET not in config["datasets"]:
        raise ValueError(f"sae.train_dataset is {TRAIN_DATASET!r}, not a key of 'datasets'")
    for spec in sae_specs():
        if spec.layer not in LAYERS:
            raise ValueError(f"sae.sweeps asks for layer {spec.layer}, which 'layers' does not cache ({LAYERS})")
        if spec.k > spec.width:
            raise ValueError(f"sae.sweeps: k={spec.k} exceeds width={spec.width}")
    for name, dataset in config["datasets"].items():
        key = dataset_key(name)
        if dataset["min_length"] > dataset["max_length"]:
            raise ValueError(f"{key}: min_length exceeds max_length")
        if MODEL_SHAPE.max_residues is not None and dataset["max_length"] > MODEL_SHAPE.max_residues:
            raise ValueError(
                f"{key}.max_length is {dataset['max_length']}, but model {MODEL} accepts at most "
                f"{MODEL_SHAPE.max_residues} residues"
            )
    if EVALSET is not None:
        if "families" not in config:
            raise ValueError("evalset is set but 'families' is missing: the F1 sweep needs family labels")
        for key, sweep in config["latents"]["figures"].items():
            if sweep is not None:
                _check_sweep_name(f"latents.figures.{key}", sweep)
    if STRUCTURE_DATASET is not None and STRUCTURE_DATASET not in (EVALSET, *PROBE_DATASETS):
        raise ValueError(f"browser.structures.dataset is {STRUCTURE_DATASET!r}: it must be the evaluation set "
                         f"({EVALSET!r}) or a probe task's dataset ({sorted(PROBE_DATASETS)})")
    for name in CONCEPT_DATASETS:
        if name not in (EVALSET, *PROBE_DATASETS):
            raise ValueError(f"concepts.datasets.{name}: concept coverage runs on the evaluation set ({EVALSET!r}) "
                             f"or a probe task's dataset ({sorted(PROBE_DATASETS)}), whose splits it follows")
    if CONCEPT_DATASETS:
        for key, sweep in config["concepts"]["figure"].items():
            if sweep is not None:
                _check_sweep_name(f"concepts.figure.{key}", sweep)
    _check_network()
    _check_heads()
    if PROBE_TASKS:
        if config["probes"]["figure_sweep"] is not None:
            _check_sweep_name("probes.figure_sweep", config["probes"]["figure_sweep"])
        for sweep in config["probes"]["sweeps"] or []:
            _check_sweep_name("probes.sweeps", sweep)


def _projected_sizes():
    """Print the projected size of each activation cache once, in the main process."""
    lines = ["protsae: projected activation caches (per dataset, all layers):"]
    for name, dataset in config["datasets"].items():
        per_layer = projected_cache_bytes(
            dataset["n_sequences"],
            dataset["expected_mean_length"],
            MODEL_SHAPE.d_model,
            config["activations"]["storage_dtype"],
            dataset["positions_per_sequence"],
        )
        lines.append(
            f"  {name}: {dataset['n_sequences']:,} sequences x {len(LAYERS)} layers, "
            f"{human_bytes(per_layer)} per layer, {human_bytes(per_layer * len(LAYERS))} in all"
        )
    print("\n".join(lines), file=sys.stderr)


def _projected_hours():
    """Print the projected device-hours of each model stage, from projection.throughputs."""
    path = config["projection"]["throughputs"]
    if path is None:
        return
    from protsae.costs import Throughputs, projection_lines, stage_work

    figures = Throughputs.read(path)
    if figures.model != MODEL:
        raise ValueError(f"projection.throughputs: {path} has figures for {figures.model!r}, not {MODEL!r}")
    # A model whose depth is unknown before loading (UniRep weights by path): every pass full depth.
    n_layers = MODEL_SHAPE.n_layers or max(config["layers"])
    work = stage_work(config, config["datasets"], sae_specs(), n_layers, MODEL_SHAPE.d_model,
                      figures.sae_d_model, EVALSET, sorted(PROBE_DATASETS))
    print("\n".join(projection_lines(work, figures, path)), file=sys.stderr)


_derived_datasets()
_check_config()
if workflow.is_main_process:
    _projected_sizes()
    _projected_hours()
