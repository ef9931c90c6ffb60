"""The workflow's own config check fills in exactly the defaults Snakemake's validate would, and
names a bad key in one line."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from protsae.configcheck import ConfigError, validate_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "config" / "schema.yaml"


@pytest.mark.parametrize("name", ["config.yaml", "tiny.yaml", "esm2_650m.yaml", "antiberty.yaml"])
def test_defaults_are_those_of_snakemakes_validate(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    ours, theirs = copy.deepcopy(config), copy.deepcopy(config)
    validate_config(ours, SCHEMA, [name])
    validate(theirs, schema=str(SCHEMA))
    assert ours == theirs
    assert ours != config  # defaults were filled in


def test_a_bad_key_is_named():
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["steering"]["max_tokenz"] = 1
    with pytest.raises(ConfigError, match=r"^bad.yaml: unknown key steering.max_tokenz; steering takes: base,"):
        validate_config(config, SCHEMA, ["bad.yaml"])
    config["steering"] = {"max_tokens": 2}
    with pytest.raises(ConfigError, match="steering.max_tokens: 2 is less than the minimum of 16"):
        validate_config(config, SCHEMA, ["bad.yaml"])
