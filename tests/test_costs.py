"""Projected device-hours (`protsae.costs`): work counted from the config, divided by measured
throughputs, on a config whose answer is worked out by hand."""

import pytest
import yaml

from protsae.costs import SPLICE_PASSES, Throughputs, projection_lines, stage_work
from protsae.spec import SAESpec

FIGURES = {"model": "m", "device": "cuda", "machine": "one test GPU", "measured": "by hand",
           "model_residues_per_s": 1000.0, "sae_latent_tokens_per_s": 1e6, "sae_d_model": 64, "sae_k": 8}


def config(source: str, group_by: str = "layer") -> dict:
    return {
        "layers": [2, 4],
        "encode": {"source": source, "group_by": group_by, "datasets": []},
        "sae": {"train_dataset": "train", "training": {"n_tokens": 1000}, "evaluation": {"n_sequences": 10}},
    }


DATASETS = {"train": {"n_sequences": 100, "expected_mean_length": 50},
            "evalset": {"n_sequences": 20, "expected_mean_length": 100},
            "probe_a": {"n_sequences": 10, "expected_mean_length": 30}}
SAES = [SAESpec("topk", 2, 8, 256, "train"), SAESpec("topk", 4, 8, 512, "train")]


def test_work_per_stage_from_a_cache():
    work = {w.stage: w for w in stage_work(config("cache"), DATASETS, SAES, n_layers=4, d_model=128,
                                           figure_d_model=64, evalset="evalset", probe_datasets=["probe_a"])}
    # Cached: the training set, the probe task and the evaluation set, each to layer 4 of 4.
    assert work["caching activations"].residues == 100 * 50 + 10 * 30 + 20 * 100
    # tokens x width x (d_model / the figure's d_model)
    assert work["SAE training"].latent_tokens == 1000 * (256 + 512) * 2
    assert work["SAE evaluation (delta CE)"].residues == 2 * 10 * 50 * SPLICE_PASSES
    assert "encoding from the model" not in work


def test_work_per_stage_from_the_model():
    by_layer = {w.stage: w for w in stage_work(config("model"), DATASETS, SAES, n_layers=8, d_model=64,
                                               figure_d_model=64, evalset="evalset", probe_datasets=["probe_a"])}
    # The evaluation set is not cached; layer 4 of 8 is half the depth.
    assert by_layer["caching activations"].residues == (100 * 50 + 10 * 30) * 4 / 8
    # One pass per SAE layer (2 and 4 of 8) over the evaluation set and the probe task.
    assert by_layer["encoding from the model"].residues == (20 * 100 + 10 * 30) * (2 + 4) / 8
    by_dataset = {w.stage: w for w in stage_work(config("model", "dataset"), DATASETS, SAES, n_layers=8,
                                                 d_model=64, figure_d_model=64, evalset="evalset",
                                                 probe_datasets=["probe_a"])}
    assert by_dataset["encoding from the model"].residues == (20 * 100 + 10 * 30) * 4 / 8


def test_hours_name_the_figures_they_use(tmp_path):
    path = tmp_path / "figures.yaml"
    path.write_text(yaml.safe_dump(FIGURES))
    figures = Throughputs.read(path)
    work = stage_work(config("cache"), DATASETS, SAES, n_layers=4, d_model=64, figure_d_model=64,
                      evalset="evalset", probe_datasets=["probe_a"])
    lines = projection_lines(work, figures, str(path))
    assert lines[0].startswith("protsae: projected GPU-hours per stage, from ") and "one test GPU" in lines[0]
    seconds = {w.stage: w.seconds(figures) for w in work}
    assert seconds["SAE training"] == 1000 * (256 + 512) / 1e6
    assert seconds["caching activations"] == (5000 + 300 + 2000) / 1000
    training = next(line for line in lines if "SAE training" in line)
    assert "1e+06 tokens x latents/s at d_model 64, k 8" in training
    assert lines[-1].startswith(f"  total: {sum(seconds.values()) / 3600:,.2f} GPU-hours")


def test_missing_figures_name_the_file_and_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="projection.throughputs: .*absent.yaml does not exist"):
        Throughputs.read(tmp_path / "absent.yaml")
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in FIGURES.items() if k != "sae_k"}))
    with pytest.raises(ValueError, match="partial.yaml lacks sae_k"):
        Throughputs.read(path)
