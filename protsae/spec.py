"""What names an SAE, and where each stage keeps its files.

An SAE is identified by its variant, layer, k, width and the dataset it was trained on
(`SAESpec`). The spec names its folders (``layer<L>/<variant>_k<K>_w<W>``, the same under every
stage), the rules build their wildcard patterns from `SAE_FOLDER`, the scripts and tests build
concrete paths from `SAESpec`, and the result files carry the spec as a dict, so nothing parses a
folder name back. `Layout` holds every path pattern of a results tree once.

This module imports nothing heavy: the workflow imports it while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

SAE_FOLDER = "layer{layer}/{variant}_k{k}_w{width}"
"""An SAE's folder under every stage that keeps per-SAE files (as a wildcard pattern)."""

SAE_NAME = "{variant}_k{k}_w{width}"
"""An SAE's name within its layer: the folder's last part, and a probe's features label."""


@dataclass(frozen=True)
class SAESpec:
    """One SAE of the config's sweeps."""

    variant: str
    layer: int
    k: int
    width: int
    dataset: str
    """The dataset whose cached activations train it."""

    @classmethod
    def from_wildcards(cls, wildcards: Mapping, dataset: str | None = None) -> SAESpec:
        """The spec of a rule job whose wildcards are those of `SAE_FOLDER` (and ``dataset``
        unless given)."""
        return cls(
            variant=wildcards["variant"], layer=int(wildcards["layer"]), k=int(wildcards["k"]),
            width=int(wildcards["width"]), dataset=dataset if dataset is not None else wildcards["dataset"],
        )

    @classmethod
    def from_dict(cls, values: Mapping) -> SAESpec:
        """The spec a result file carries (`as_dict`)."""
        return cls(**{key: values[key] for key in ("variant", "layer", "k", "width", "dataset")})

    @property
    def name(self) -> str:
        """``<variant>_k<K>_w<W>``: unique within a layer and training dataset."""
        return SAE_NAME.format(variant=self.variant, k=self.k, width=self.width)

    @property
    def folder(self) -> str:
        """``layer<L>/<variant>_k<K>_w<W>``."""
        return SAE_FOLDER.format(variant=self.variant, layer=self.layer, k=self.k, width=self.width)

    def as_dict(self) -> dict:
        # Spelled out: dataclasses.asdict deep-copies, and the DAG of a paper config calls this
        # thousands of times.
        return {"variant": self.variant, "layer": self.layer, "k": self.k, "width": self.width, "dataset": self.dataset}

    def coordinates(self) -> dict:
        """Where the SAE sits in the sweeps: variant, layer, k, width (the summary tables' keys)."""
        return {"variant": self.variant, "layer": self.layer, "k": self.k, "width": self.width}


@dataclass(frozen=True)
class Layout:
    """Every path of one model's results tree, as concrete paths (from a spec) or wildcard
    patterns (from `SAE_FOLDER`), so a pattern is spelled once."""

    model: str
    """The model's short name: results go to ``results/<model>/``, logs to ``logs/<model>/``."""

    @property
    def results(self) -> str:
        return f"results/{self.model}"

    @property
    def logs(self) -> str:
        return f"logs/{self.model}"

    def sequences(self, dataset: str = "{dataset}") -> str:
        return f"{self.results}/sequences/{dataset}"

    def activations(self, dataset: str = "{dataset}", layer: int | str = "{layer}") -> str:
        """The folder of one layer's manifest (which lists that layer's file in every shard)."""
        return f"{self.results}/activations/{dataset}/layer{layer}"

    def activation_shard(self, dataset: str = "{dataset}", shard: int | str = "{shard}") -> str:
        """One caching job's folder: a ``layer<L>.parquet`` per cached layer. One folder, not one
        file per layer, is what the workflow tracks, which keeps the paper's DAG light."""
        return f"{self.results}/activations/{dataset}/shard{shard}"

    def activation_file(self, dataset: str, shard: int | str, layer: int | str) -> str:
        return f"{self.activation_shard(dataset, shard)}/layer{layer}.parquet"

    def activation_stats(self, dataset: str = "{dataset}", shard: int | str = "{shard}") -> str:
        """What caching one shard measured (all layers at once), with each file's size and sha256."""
        return f"{self.results}/activations/{dataset}/stats/shard{shard}.json"

    def sae(self, spec: SAESpec | None = None) -> str:
        """An SAE's directory (weights, config, metrics, splice evaluation)."""
        if spec is None:
            return f"{self.results}/sae/{{dataset}}/{SAE_FOLDER}"
        return f"{self.results}/sae/{spec.dataset}/{spec.folder}"

    def codes(self, dataset: str, spec: SAESpec | None = None) -> str:
        """The folder of the code shards (``shard<N>.parquet``) of ``dataset`` under one SAE."""
        return f"{self.results}/codes/{dataset}/{SAE_FOLDER if spec is None else spec.folder}"

    def latents_root(self, evalset: str) -> str:
        """The latent analyses over one evaluation set (its split, the summary of every SAE)."""
        return f"{self.results}/latents/{evalset}"

    def latents(self, evalset: str, spec: SAESpec | None = None) -> str:
        """The latent tables of one SAE over the evaluation set."""
        return f"{self.latents_root(evalset)}/{SAE_FOLDER if spec is None else spec.folder}"

    def steering(self, evalset: str, spec: SAESpec | None = None) -> str:
        """One SAE's steering study over the evaluation set's family-specific latents."""
        root = f"{self.results}/steering/{evalset}"
        return f"{root}/{SAE_FOLDER if spec is None else spec.folder}"

    def probe(self, task: str, layer: int | str = "{layer}", features: str = "{features}") -> str:
        """One probe fit: raw activations (``features="raw"``) or an SAE's latents (its name)."""
        return f"{self.results}/probes/{task}/layer{layer}/{features}"

    def concept_dataset(self, dataset: str = "{dataset}") -> str:
        """One dataset's concept table and concept split (reference/valid/test)."""
        return f"{self.results}/concepts/datasets/{dataset}"

    def concepts(self, spec: SAESpec | None = None) -> str:
        """One SAE's concept coverage (best pairs, counts) over every concept dataset."""
        return f"{self.results}/concepts/sae/{SAE_FOLDER if spec is None else spec.folder}"

    def concepts_raw(self, layer: int | str = "{layer}") -> str:
        """The raw residual dimensions' concept coverage at one layer (the baseline)."""
        return f"{self.results}/concepts/raw/layer{layer}"

    def examples(self, dataset: str, spec: SAESpec | None = None) -> str:
        """One SAE's browser examples of one dataset (its proteins and their tracks, per latent)."""
        return f"{self.results}/browser_data/{dataset}/{SAE_FOLDER if spec is None else spec.folder}"

    @property
    def browser(self) -> str:
        """The latent browser's site."""
        return f"{self.results}/browser"

    def browser_sae(self, spec: SAESpec | None = None) -> str:
        return f"{self.browser}/{SAE_FOLDER if spec is None else spec.folder}"

    def figure(self, name: str) -> str:
        return f"{self.results}/figures/{name}.png"

    @staticmethod
    def evalset(name: str) -> str:
        """An evaluation set's clusters, representatives and labels (model-independent)."""
        return f"results/evalsets/{name}"

    @staticmethod
    def probe_task(task: str = "{task}") -> str:
        """A probe task's sequences, labels and split (model-independent)."""
        return f"results/probes/{task}"


PUBLISHED_SWEEP = "published"
"""The pseudo-sweep of the published SAEs (``sae.published``): a name that ``probes.sweeps``,
``probes.figure_sweep`` and ``latents.figures`` may use like a sweep's."""

PUBLISHED_FILES = {
    "interprot": (),
    "sparsify": ("sae.safetensors", "cfg.json"),
    "saelens": ("sae_weights.safetensors", "cfg.json"),
    "dictionary_learning": ("ae.pt",),
}
"""The files of each published-SAE layout in the folder its ``path`` names (InterProt's
``path`` is the checkpoint file itself). A dictionary_learning folder may also hold the
training's ``config.json``, read for its checks when present."""


def published_files(entry: Mapping) -> list[str]:
    """The files a ``sae.published`` entry names (what its import job reads)."""
    names = PUBLISHED_FILES[entry["layout"]]
    return [f"{entry['path']}/{name}" for name in names] if names else [entry["path"]]


def published_spec(entry: Mapping, dataset: str) -> SAESpec:
    """The spec of a ``sae.published`` entry: its name is the variant, so its folders sit beside
    the trained SAEs' under every stage without clashing with them; ``dataset`` is the training
    dataset, whose held-out tokens and sequences evaluate it like a trained SAE."""
    return SAESpec(variant=entry["name"], layer=entry["layer"], k=entry["k"], width=entry["width"], dataset=dataset)


def task_data_paths(data: Mapping) -> list[str]:
    """The files a probe task's loader reads: every value under its ``data`` whose key ends in
    ``path`` (one file) or ``paths`` (a list, or a mapping of names to files)."""
    paths = []
    for key, value in data.items():
        if key.endswith("path"):
            paths.append(value)
        elif key.endswith("paths"):
            paths += list(value.values()) if isinstance(value, Mapping) else list(value)
    return paths


def user_inputs(config: Mapping) -> list[str]:
    """The files a config names that no rule makes: the user's inputs (datasets' FASTAs, the
    evaluation set and its label sources, the probe tasks' data, the published SAEs' files)."""
    paths = [d["fasta"] for d in config["datasets"].values() if not d["fasta"].startswith("results/")]
    if "evalset" in config:
        families = config["families"]
        paths += [config["evalset"]["sequences"], families["entries"]]
        paths += [source["path"] for source in families["sources"]]
        paths += [families["pfam2interpro"]] if families.get("pfam2interpro") else []
    for task in config.get("probes", {}).get("tasks", {}).values():
        paths += task_data_paths(task["data"])
    structures = (config.get("browser") or {}).get("structures")
    if structures:
        paths.append(structures["path"])
    for dataset in (config.get("concepts") or {}).get("datasets", {}).values():
        paths += [source["path"] for source in dataset.get("sources", [])]
    for entry in (config.get("sae") or {}).get("published") or []:
        paths += published_files(entry)
    return paths

