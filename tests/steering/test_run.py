"""The steering study's settings against the schema, its choice of latents and of controls."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from protsae.steering.run import RESOURCE_KEYS, SteeringSettings, control_latents, family_specific_latents

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "schema.yaml").read_text())
STEERING = SCHEMA["properties"]["steering"]["properties"]


def test_the_schema_and_the_settings_agree():
    fields = {f.name: f.default for f in dataclasses.fields(SteeringSettings)}
    assert set(STEERING) - RESOURCE_KEYS == set(fields)
    for key, default in fields.items():
        assert (list(default) if isinstance(default, tuple) else default) == STEERING[key]["default"], key
    defaults = {key: spec["default"] for key, spec in STEERING.items()}
    assert SteeringSettings.from_config(defaults) == SteeringSettings()
    with pytest.raises(ValueError, match="steering.base must be one of"):
        SteeringSettings(base="max")


def f1_table():
    return pd.DataFrame({
        "latent": [0, 1, 2, 3],
        "status": ["scored", "scored", "top_protein_unlabelled", "scored"],
        "family": ["IPR1", "IPR2", None, "IPR3"],
        "family_name": ["a", "b", None, "c"],
        "test_f1": [0.9, 0.5, np.nan, 0.75],
    })


def test_family_specific_latents_are_those_above_f1_min_with_top_sequences():
    top = [["P1", "P2"], ["P3"], [], []]
    latents = family_specific_latents(f1_table(), top, f1_min=0.7)
    # Latent 3 passes F1 but has no top test sequence, so there is nothing to steer.
    assert latents["latent"].tolist() == [0] and latents["top"].tolist() == [["P1", "P2"]]
    with pytest.raises(ValueError, match="f1.tsv: latent 3 is out of range: the SAE has 2 latents"):
        family_specific_latents(f1_table(), top[:2], f1_min=0.7, source="f1.tsv")


def test_controls_are_alive_non_family_latents_drawn_by_seed():
    alive = np.array([True] * 8 + [False] * 2)
    controls = control_latents(10, {0, 1}, alive, 3, seed=0)
    assert len(set(controls)) == 3 and not set(controls) & {0, 1, 8, 9}
    assert controls == control_latents(10, {0, 1}, alive, 3, seed=0)
    with pytest.raises(ValueError, match="only 6 latents can serve as controls, 7 needed"):
        control_latents(10, {0, 1}, alive, 7, seed=0)


def test_a_family_no_protein_carries_stops_with_the_label_file():
    from protsae.steering.run import align_families

    latents = pd.DataFrame({"latent": [5], "family": ["IPR999999"], "family_name": ["x"], "test_f1": [0.9],
                            "top": [["P1"]]})
    labels = pd.DataFrame({"protein": ["P1"], "accession": ["IPR000001"]})
    with pytest.raises(ValueError, match="families.tsv: no protein carries family IPR999999 of latent 5"):
        align_families(latents, {"P1": "MK"}, labels, "db", SteeringSettings(), labels_source="families.tsv")
    labels = pd.DataFrame({"protein": ["P2"], "accession": ["IPR999999"]})
    with pytest.raises(ValueError, match="top sequence P1 of latent 5 is not in the BLAST database's FASTA"):
        align_families(latents, {"P2": "MK"}, labels, "db", SteeringSettings())
