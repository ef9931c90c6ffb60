"""Published SAEs in the workflow: the tiny config with one SAE of each layout under sae.published
plans their import and every stage after it, as for a trained SAE; bad entries name the key."""

import json
import re
import shutil

import pytest
import yaml
from conftest import snakemake, workdir_copy
from published_checkpoints import write_workflow_config
from test_workflow import planned_jobs

from protsae.spec import PUBLISHED_SWEEP


def published_dry_run(tmp_path, edit=None, check=True):
    work = workdir_copy(tmp_path)
    config_path = write_workflow_config(work)
    config = yaml.safe_load(config_path.read_text())
    if edit is not None:
        edit(config)
        config_path.write_text(yaml.safe_dump(config))
    proc = snakemake(["-n", "--configfile", config_path.name], cwd=work, check=check)
    return config, proc


def test_published_saes_are_imported_and_reach_every_stage(tmp_path):
    config, proc = published_dry_run(tmp_path)
    text = proc.stdout + proc.stderr
    jobs = planned_jobs(text)
    published = config["sae"]["published"]
    trained = {(s.get("variant", "topk"), layer, k, width) for s in config["sae"]["sweeps"]
               for layer in s["layers"] for k in s["k"] for width in s["width"]}
    n_saes = len(trained) + len(published)
    assert jobs["import_sae"] == len(published) == 4
    assert jobs["train_sae"] == len(trained)  # none of the published ones is trained
    assert jobs["evaluate_sae"] == n_saes
    for rule in ("family_specificity", "activation_patterns", "steer_sae", "browser_sae"):
        assert jobs[rule] == n_saes, rule
    # Probed too (probes.sweeps names them): raw per layer, the layers sweep and the published SAEs.
    assert config["probes"]["sweeps"] == ["layers", PUBLISHED_SWEEP]
    assert jobs["probe_fit"] == len(config["probes"]["tasks"]) * (len(config["layers"]) + 2 + len(published))
    results = "results/tiny_esm2"
    for entry in published:
        folder = f"layer{entry['layer']}/{entry['name']}_k{entry['k']}_w{entry['width']}"
        # Imported into the training dataset's SAE folder, then encoded (group_by: sae) and analysed.
        assert re.search(rf"rule import_sae:\n(.*\n)*?    output: {results}/sae/uniref50/{folder}/sae.safetensors", text)
        assert f"encode_codes_swissprot_layer{entry['layer']}_{entry['name']}_k4_w64" in text
        for path in (f"latents/swissprot/{folder}/family_f1.tsv", f"steering/swissprot/{folder}/metrics.tsv",
                     f"browser/{folder}", f"sae/uniref50/{folder}/splice.json"):
            assert f"{results}/{path}" in text, path


def test_a_published_entry_without_its_files_names_the_key(tmp_path):
    def drop(config):
        config["sae"]["published"][1]["path"] = "resources/published/nowhere"

    _, proc = published_dry_run(tmp_path, drop, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "sae.published[1].path: the sparsify SAE 'sparsify_l1' has no file resources/published/nowhere/sae.safetensors" in text


def test_a_published_name_that_is_a_variant_names_the_key(tmp_path):
    def rename(config):
        config["sae"]["published"][0]["name"] = "relu_l1"

    _, proc = published_dry_run(tmp_path, rename, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "sae.published[0].name: 'relu_l1' is an SAE variant's name" in text


def test_published_saes_alone_need_no_sweep(tmp_path):
    """Characterising published SAEs without training any: no sweeps, the figures over the
    published SAEs' pseudo-sweep."""
    def published_only(config):
        config["sae"]["sweeps"] = []
        config["latents"]["figures"] = {"per_layer": PUBLISHED_SWEEP, "k": None, "width": None}
        config["concepts"]["figure"] = {"per_layer": PUBLISHED_SWEEP, "k": None, "width": None}
        config["probes"].update(sweeps=None, figure_sweep=PUBLISHED_SWEEP)
        config["networks"] = {"sweep": None}  # no layer sweep: no feature network
        config["heads"] = {"sweep": None}  # ... and no heads read through one

    config, proc = published_dry_run(tmp_path, published_only)
    jobs = planned_jobs(proc.stdout + proc.stderr)
    n_published = len(config["sae"]["published"])
    assert "train_sae" not in jobs and "sae_sweep_figure" not in jobs
    assert jobs["import_sae"] == jobs["evaluate_sae"] == jobs["family_specificity"] == n_published
    assert jobs["latent_figure"] == 2 and jobs["probe_figure"] == 2 and jobs["concept_figure"] == 1
    assert jobs["probe_fit"] == len(config["probes"]["tasks"]) * (len(config["layers"]) + n_published)


def test_no_sae_at_all_is_an_error(tmp_path):
    def nothing(config):
        config["sae"].update(sweeps=[], published=[])

    _, proc = published_dry_run(tmp_path, nothing, check=False)
    assert proc.returncode != 0 and "sae.sweeps is empty and sae.published names no SAE" in proc.stdout + proc.stderr


def test_published_saes_run_end_to_end(tiny_run, tmp_path):
    """A real run: one synthetic checkpoint of each layout joins a copy of the finished tiny run
    and is imported, evaluated and spliced; the InterProt one goes on through encoding, latents,
    steering, probes, concept coverage and the browser. Nothing of the trained SAEs reruns.
    Past the import an SAE is one of protsae's own (a topk or relu_l1 SAE, as trained ones are),
    so one published SAE through the later stages stands for all four (the dry run above plans
    them for every one)."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    config_path = write_workflow_config(work)
    config = yaml.safe_load(config_path.read_text())
    results = work / "results" / "tiny_esm2"
    published = config["sae"]["published"]
    folders = {entry["name"]: f"layer{entry['layer']}/{entry['name']}_k{entry['k']}_w{entry['width']}"
               for entry in published}
    downstream = "interprot_l2"
    assert downstream in folders
    targets = [f"sae/uniref50/{folder}/splice.json" for folder in folders.values()]
    folder = folders[downstream]
    targets += [f"latents/swissprot/{folder}/patterns.tsv", f"latents/swissprot/{folder}/family_f1.tsv",
                f"steering/swissprot/{folder}/metrics.tsv", f"browser/{folder}",
                f"concepts/sae/{folder}/coverage.json",
                *(f"probes/{task}/{folder}/result.json" for task in config["probes"]["tasks"])]
    # Targets first: --configfile takes every argument after it.
    proc = snakemake([*(f"results/tiny_esm2/{target}" for target in targets), "--cores", "2",
                      "--configfile", config_path.name], cwd=work)
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["import_sae"] == jobs["evaluate_sae"] == 4
    assert "train_sae" not in jobs and "cache_activations" not in jobs
    for entry in published:
        folder = folders[entry["name"]]
        sae = json.loads((results / f"sae/uniref50/{folder}/config.json").read_text())
        assert sae["source"]["layout"] == entry["layout"]
        metrics = json.loads((results / f"sae/uniref50/{folder}/metrics.json").read_text())
        assert 0 < metrics["heldout_fvu"] < 10 and metrics["heldout_l0"] > 0
        splice = json.loads((results / f"sae/uniref50/{folder}/splice.json").read_text())
        assert splice["delta_ce_with_error"] == pytest.approx(0, abs=1e-4)
    folder = folders[downstream]
    coverage = json.loads((results / f"concepts/sae/{folder}/coverage.json").read_text())
    assert coverage["variant"] == downstream and coverage["concepts_evaluated"] > 0
    assert (results / f"browser/{folder}/index.html").stat().st_size > 0
    for task in config["probes"]["tasks"]:
        probe = json.loads((results / f"probes/{task}/{folder}/result.json").read_text())
        assert probe["features"] == f"{downstream}_k4_w64" and 0 <= probe["test_score"] <= 1 and probe["n_test"] > 0
