"""The SAE settings against the config schema: one set of names and defaults, and the routing of
the config's sections onto `SAEConfig` and `TrainConfig`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from protsae.sae.config import RESOURCE_KEYS, SAEConfig, TrainConfig, run_configs

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "schema.yaml").read_text())
SAE_SCHEMA = SCHEMA["properties"]["sae"]["properties"]
TRAINING = SAE_SCHEMA["training"]["properties"]
VARIANTS = SAE_SCHEMA["variants"]["properties"]
# SAEConfig fields that no schema key sets: those of the sweep entry, and InterProt's format.
SWEEP_FIELDS = {"d_model", "n_latents", "k", "variant"}
NOT_CONFIGURABLE = {"standardize_tokens"}


def field_defaults(cls) -> dict:
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    }


def as_schema_value(value):
    """Tuples as the lists YAML gives."""
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(
    "section, key",
    [("training", key) for key in TRAINING if key not in RESOURCE_KEYS]
    + [(f"variants.{variant}", key) for variant, spec in VARIANTS.items() for key in spec["properties"]],
)
def test_a_schema_default_is_the_dataclass_default(section, key):
    spec = TRAINING[key] if section == "training" else VARIANTS[section.split(".")[1]]["properties"][key]
    owners = [cls for cls in (SAEConfig, TrainConfig) if key in field_defaults(cls)]
    if section != "training":
        owners = [cls for cls in owners if cls is SAEConfig]
    assert owners, f"sae.{section}.{key} is no field of SAEConfig or TrainConfig"
    for cls in owners:
        assert as_schema_value(field_defaults(cls)[key]) == spec["default"], f"{cls.__name__}.{key}"


def test_every_setting_is_in_the_schema():
    variant_keys = {key for spec in VARIANTS.values() for key in spec["properties"]}
    unreachable = {f.name for f in dataclasses.fields(SAEConfig)} - SWEEP_FIELDS - NOT_CONFIGURABLE
    unreachable -= set(TRAINING) | variant_keys
    unreachable |= {f.name for f in dataclasses.fields(TrainConfig)} - set(TRAINING)
    assert not unreachable


def schema_defaults(properties: dict) -> dict:
    """A section as Snakemake fills it from the schema when the config leaves it out."""
    return {key: spec["default"] for key, spec in properties.items()}


def test_run_configs_of_the_defaults_are_the_dataclass_defaults():
    sweep = {"d_model": 32, "n_latents": 256, "k": 8, "variant": "matryoshka"}
    sae_cfg, train_cfg = run_configs(
        schema_defaults(TRAINING), schema_defaults(VARIANTS["matryoshka"]["properties"]), **sweep
    )
    assert sae_cfg == SAEConfig(**sweep)
    assert train_cfg == TrainConfig()


def test_run_configs_routes_each_key_to_its_dataclass():
    training = {"seed": 7, "lr": 1e-3, "dead_tokens_threshold": 5000, "batch_size": 64, "n_tokens": 640, "threads": 3}
    options = {"matryoshka_selection": "batchtopk", "threshold_decay": 0.9, "k_store": 12, "matryoshka_prefixes": [0.5, 1]}
    sae_cfg, train_cfg = run_configs(training, options, d_model=8, n_latents=64, k=4, variant="matryoshka")
    # seed is both the weights' and the data order's.
    assert sae_cfg.seed == train_cfg.seed == 7
    assert (train_cfg.lr, train_cfg.batch_size, sae_cfg.dead_tokens_threshold) == (1e-3, 64, 5000)
    assert (sae_cfg.threshold_decay, sae_cfg.k_store, sae_cfg.matryoshka_prefixes) == (0.9, 12, (0.5, 1.0))


def test_run_configs_names_a_key_of_neither_dataclass():
    sweep = {"d_model": 8, "n_latents": 64, "k": 4, "variant": "topk"}
    with pytest.raises(ValueError, match="sae.training key 'warmup_steps' is neither"):
        run_configs({"warmup_steps": 10}, {}, **sweep)
    with pytest.raises(ValueError, match="sae.variants key 'prefixes' is neither"):
        run_configs({}, {"prefixes": [1.0]}, **sweep)
    with pytest.raises(ValueError, match="sae.training key 'k' is set twice"):
        run_configs({"k": 8}, {}, **sweep)
