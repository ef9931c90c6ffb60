"""Projected device-hours per stage, printed by a dry run before anything is submitted.

Each stage's work is counted from the config (residues through the model, SAE-training tokens x
latents) and divided by a measured throughput: ``projection.throughputs`` names a YAML file that
`benchmarks/throughput.py` writes on the machine that measured it::

    model: esm2_t33_650M          # the model the figures are for
    device: cuda                  # where they were measured
    machine: "..."                # what measured them (CPU/GPU, torch, precision)
    measured: "..."               # date and command
    model_residues_per_s: 1234.5  # full-depth forward, token-budget batches
    sae_latent_tokens_per_s: 1e9  # SAE training tokens x width per second at sae_d_model, sae_k
    sae_d_model: 1280
    sae_k: 64

Work is linear in what it counts: the model forward in residues and depth (a job stops at the
deepest layer it needs), SAE training in tokens x width x d_model. No torch here: the workflow
imports this module while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

# Forward passes of the delta-CE evaluation per sequence: clean, spliced, x_hat + error, zero-ablated.
SPLICE_PASSES = 4
THROUGHPUT_KEYS = ("model", "device", "machine", "measured", "model_residues_per_s", "sae_latent_tokens_per_s",
                   "sae_d_model", "sae_k")


@dataclass(frozen=True)
class Throughputs:
    model: str
    device: str
    machine: str
    measured: str
    model_residues_per_s: float
    sae_latent_tokens_per_s: float
    sae_d_model: int
    sae_k: int

    @classmethod
    def read(cls, path: str | Path) -> Throughputs:
        """The figures in ``path``; a missing file or key is an error naming both."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"projection.throughputs: {path} does not exist (benchmarks/throughput.py "
                                    "measures and writes it)")
        figures = yaml.safe_load(path.read_text()) or {}
        missing = [key for key in THROUGHPUT_KEYS if key not in figures]
        if missing:
            raise ValueError(f"projection.throughputs: {path} lacks {', '.join(missing)}")
        return cls(**{key: figures[key] for key in THROUGHPUT_KEYS})


@dataclass(frozen=True)
class Work:
    """One stage's work: ``residues`` through the model (already weighted by the fraction of its
    depth they go through) and ``latent_tokens`` of SAE training (tokens x width x d_model /
    the figure's d_model)."""

    stage: str
    residues: float = 0.0
    latent_tokens: float = 0.0
    note: str = ""

    def seconds(self, figures: Throughputs) -> float:
        return self.residues / figures.model_residues_per_s + self.latent_tokens / figures.sae_latent_tokens_per_s


def dataset_residues(dataset: dict) -> float:
    """Residues a forward pass over a sampled dataset reads (every residue, whatever is kept)."""
    return dataset["n_sequences"] * dataset["expected_mean_length"]


def stage_work(config: dict, datasets: dict[str, dict], saes: list, n_layers: int, d_model: int,
               figure_d_model: int, evalset: str | None, probe_datasets: list[str]) -> list[Work]:
    """The work of each model stage of ``config``. ``datasets``: every dataset (derived ones
    included) by name; ``saes``: the `SAESpec` s of the sweeps; ``n_layers``: the model's depth."""
    layers = config["layers"]
    deepest = max(layers) / n_layers
    encode = config["encode"]
    train = config["sae"]["train_dataset"]
    from_model = encode.get("source", "cache") == "model"
    coded = [name for name in (evalset, *probe_datasets) if name]
    # The probe tasks' datasets are cached whatever the source (the raw-activation probes read them).
    cached = [train, *encode.get("datasets", []), *probe_datasets] + ([] if from_model or not evalset else [evalset])
    cached = list(dict.fromkeys(cached))
    work = [Work("caching activations", residues=sum(dataset_residues(datasets[name]) for name in cached) * deepest,
                 note=f"{', '.join(cached)}; up to layer {max(layers)} of {n_layers}")]
    training = config["sae"]["training"]
    work.append(Work("SAE training", latent_tokens=sum(training["n_tokens"] * spec.width for spec in saes)
                     * d_model / figure_d_model, note=f"{len(saes)} SAEs x {training['n_tokens']:,} tokens"))
    evaluation = config["sae"]["evaluation"]
    mean_length = datasets[train]["expected_mean_length"]
    work.append(Work("SAE evaluation (delta CE)",
                     residues=len(saes) * evaluation["n_sequences"] * mean_length * SPLICE_PASSES,
                     note=f"{len(saes)} SAEs x {evaluation['n_sequences']:,} sequences x {SPLICE_PASSES} passes"))
    if from_model and coded:
        if encode.get("group_by", "layer") == "layer":
            depth = sum(layer for layer in {spec.layer for spec in saes}) / n_layers
            note = f"one pass per SAE layer ({len({spec.layer for spec in saes})})"
        else:
            depth, note = max(spec.layer for spec in saes) / n_layers, "one pass per dataset"
        work.append(Work("encoding from the model", residues=sum(dataset_residues(datasets[name]) for name in coded)
                         * depth, note=f"{', '.join(coded)}; {note}"))
    return work


def projection_lines(work: list[Work], figures: Throughputs, source: str) -> list[str]:
    """The dry run's lines: hours per stage, the figure each uses, and the total."""
    device = "GPU" if figures.device.startswith("cuda") else figures.device.upper()
    lines = [f"protsae: projected {device}-hours per stage, from {source} ({figures.machine}; {figures.measured}):"]
    total = 0.0
    for item in work:
        seconds = item.seconds(figures)
        total += seconds
        used = []
        if item.residues:
            used.append(f"model forward {figures.model_residues_per_s:,.0f} residues/s")
        if item.latent_tokens:
            used.append(f"SAE training {figures.sae_latent_tokens_per_s:.3g} tokens x latents/s "
                        f"at d_model {figures.sae_d_model}, k {figures.sae_k}")
        lines.append(f"  {item.stage}: {seconds / 3600:,.2f} h ({item.note}; {', '.join(used)})")
    lines.append(f"  total: {total / 3600:,.2f} {device}-hours on one device (an upper bound where a sample may come "
                 "out smaller than its n_sequences; steering, probes and the CPU stages not counted: steering's "
                 "cost is per family-specific latent, known after stage 4)")
    return lines
