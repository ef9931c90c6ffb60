"""The workflow's own config check fills in exactly the defaults Snakemake's validate would, and
names a bad key in one line."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

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


def _leaves(tree, prefix=()):
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {path: value for key, sub in tree.items() for path, value in _leaves(sub, (*prefix, key)).items()}


def test_the_full_size_demo_overlay_changes_only_the_trimmed_sizes():
    """config/demo_full.yaml, layered on the demo as ``--configfile config/config.yaml
    config/demo_full.yaml`` merges them, is a valid config that restores the sizes the demo was
    trimmed from and touches nothing else."""
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    full = copy.deepcopy(demo)
    update_config(full, yaml.safe_load((REPO / "config" / "demo_full.yaml").read_text()))
    validate_config(copy.deepcopy(full), SCHEMA, ["config.yaml", "demo_full.yaml"])
    before, after = _leaves(demo), _leaves(full)
    assert before.keys() == after.keys()
    changed = {path: (before[path], after[path]) for path in before if before[path] != after[path]}
    assert changed == {
        ("steering", "n_sequences"): (2, 4),
        ("probes", "tasks", "secondary_structure", "max_items"): (500, 1000),
    }
