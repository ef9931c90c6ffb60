"""The SAE spec names every per-SAE folder; the layout spells each path pattern once."""

import dataclasses

import pytest

from protsae.spec import SAE_FOLDER, Layout, SAESpec

SPEC = SAESpec(variant="topk", layer=3, k=32, width=2048, dataset="uniref50")


def test_spec_names_its_folders():
    assert SPEC.name == "topk_k32_w2048" and SPEC.folder == "layer3/topk_k32_w2048"
    layout = Layout("unirep256")
    assert layout.sae(SPEC) == "results/unirep256/sae/uniref50/layer3/topk_k32_w2048"
    assert layout.codes("swissprot", SPEC) == "results/unirep256/codes/swissprot/layer3/topk_k32_w2048"
    assert layout.latents("swissprot", SPEC) == "results/unirep256/latents/swissprot/layer3/topk_k32_w2048"
    assert layout.probe("localization", 3, SPEC.name) == "results/unirep256/probes/localization/layer3/topk_k32_w2048"


def test_patterns_and_paths_agree():
    """A rule's wildcard pattern, filled with a spec's values, is that spec's path."""
    layout = Layout("m")
    values = SPEC.as_dict()
    assert layout.sae().format(**values) == layout.sae(SPEC)
    assert layout.codes("d").format(**values) == layout.codes("d", SPEC)
    assert SAE_FOLDER.format(**values) == SPEC.folder


def test_spec_round_trips_through_wildcards_and_result_files():
    wildcards = {"variant": "topk", "layer": "3", "k": "32", "width": "2048"}
    assert SAESpec.from_wildcards(wildcards, dataset="uniref50") == SPEC
    assert SAESpec.from_dict(SPEC.as_dict() | {"extra": 1}) == SPEC
    assert SPEC.as_dict() == dataclasses.asdict(SPEC)  # spelled out for speed, so it must not drift
    assert SPEC.coordinates() == {"variant": "topk", "layer": 3, "k": 32, "width": 2048}
    with pytest.raises(KeyError):
        SAESpec.from_wildcards(wildcards)  # no dataset wildcard and none given


def test_spec_does_not_pull_in_heavy_modules():
    import subprocess
    import sys

    code = "import sys, protsae.spec, protsae.activations.sizes; print(sorted({'torch', 'pyarrow', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_user_inputs_are_the_files_no_rule_makes():
    from protsae.spec import task_data_paths, user_inputs

    assert task_data_paths({"format": "tape_ss", "paths": {"train": "a.json", "valid": "b.json"}}) == ["a.json", "b.json"]
    assert task_data_paths({"format": "x", "labels_path": "l.tsv", "fasta_paths": ["a.fa", "b.fa"]}) == [
        "l.tsv", "a.fa", "b.fa"]
    config = {
        "datasets": {"uniref50": {"fasta": "u.fa"}, "made": {"fasta": "results/x.fa"}},
        "evalset": {"sequences": "sp.dat"},
        "families": {"entries": "entry.list", "sources": [{"path": "sp.dat"}], "pfam2interpro": None},
        "probes": {"tasks": {"t": {"data": {"path": "t.csv"}}}},
    }
    assert user_inputs(config) == ["u.fa", "sp.dat", "entry.list", "sp.dat", "t.csv"]
