"""The Snakemake workflow: lint, dry-runs of every config, and a real run of the tiny config."""

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import (
    REPO,
    SNAKEMAKE,
    TINY,
    flip_byte,
    result_tables,
    slurm_is_up,
    snakemake,
    workdir_copy,
)

from protsae import malloc
from protsae.activations.manifest import file_sha256
from protsae.activations.storage import list_type, read_acts
from protsae.latents.patterns import PATTERNS
from protsae.spec import user_inputs


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


def sae_grid(sweeps: list[dict]) -> set[tuple]:
    """The distinct (variant, layer, k, width) of some config sweeps."""
    return {(sweep.get("variant", "topk"), layer, k, width) for sweep in sweeps
            for layer in sweep["layers"] for k in sweep["k"] for width in sweep["width"]}


@pytest.mark.parametrize("script", sorted((Path(REPO) / "workflow/scripts").glob("*.py")), ids=lambda p: p.name)
def test_every_rule_script_compiles(script):
    """A syntax error in a script would otherwise show only when its job runs."""
    compile(script.read_text(), str(script), "exec")


def test_antiberty_dry_run(tmp_path):
    """The transformer demo: stages 1-3 and every block's heads, no evaluation set or probes."""
    proc = snakemake(["-n", "--configfile", "config/antiberty.yaml"], cwd=workdir_copy(tmp_path))
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["train_sae"] == 9 and jobs["heads_block"] == 8 and jobs["heads"] == jobs["heads_figure"] == 1
    assert not any(rule.startswith(("evalset", "family", "probe", "network", "browser")) for rule in jobs), jobs


def test_heads_sweep_needs_adjacent_layers(tmp_path):
    def edit(config):
        config["sae"]["sweeps"][0]["layers"] = [1]
        config["heads"] = {"sweep": "layers"}

    returncode, text = dry_run_of(tmp_path, edit)
    assert returncode != 0 and "heads.sweep" in text and "two adjacent layers" in text, text


def test_lint_is_clean():
    proc = snakemake(["--lint"], cwd=REPO, check=False)
    text = proc.stdout + proc.stderr
    assert "Lint for rule" not in text and "Lints for" not in text, text


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/tiny.yaml", "config/esm2_650m.yaml"])
def test_dry_run(configfile, tmp_path):
    work = workdir_copy(tmp_path)
    config = yaml.safe_load((Path(REPO) / configfile).read_text())
    for path in user_inputs(config):
        if not (work / path).exists():  # the paper's inputs (UniRef50, Swiss-Prot...) are the user's to download
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).touch()
    proc = snakemake(["-n", "--configfile", configfile], cwd=work)
    jobs = planned_jobs(proc.stdout + proc.stderr)
    n_saes = len(sae_grid(config["sae"]["sweeps"]))
    # Projected device-hours per model stage, from the measured throughputs the config names.
    if config.get("projection", {}).get("throughputs"):
        start = proc.stderr.index("-hours per stage, from")
        projection = proc.stderr[proc.stderr.rindex("protsae: projected", 0, start) :].splitlines()
        assert config["projection"]["throughputs"] in projection[0]
        stages = [line.split(":")[0].strip() for line in projection[1:6]]
        assert stages[:3] == ["caching activations", "SAE training", "SAE evaluation (delta CE)"], projection
        assert f"{n_saes} SAEs x" in projection[2] and "residues/s" in projection[1], projection
        assert any(line.startswith("  total: ") for line in projection), projection
    assert jobs["train_sae"] == n_saes
    # Cached: the training set, the probe tasks (raw probes read their activations) and, when codes
    # come from the cache, the evaluation set; the last two are sampled as their sections say.
    shards = config["datasets"]["uniref50"]["n_shards"]
    shards += sum(task.get("sample", {}).get("n_shards", 1) for task in config["probes"]["tasks"].values())
    cached = 1 + len(config["probes"]["tasks"])
    if config.get("encode", {}).get("source", "cache") == "cache":
        shards += config["evalset"].get("sample", {}).get("n_shards", 1)
        cached += 1
    # Without intermediates kept, the probe tasks' (and the evaluation set's) caches are temp().
    assert jobs.get("cache_activations", 0) + jobs.get("cache_intermediate_activations", 0) == shards
    if config.get("keep_intermediates", True) is False:
        assert jobs["cache_activations"] == config["datasets"]["uniref50"]["n_shards"]
    assert jobs["activation_manifest"] == cached  # one per cached dataset, all its layers
    # Encoding: every SAE over the evaluation set and encode.datasets, the probed SAEs over each task.
    encoding = sum(n for rule, n in jobs.items() if rule.startswith("encode_codes_"))
    group_by = config.get("encode", {}).get("group_by", "layer")
    per_dataset = {"sae": n_saes, "layer": len({layer for _, layer, _, _ in sae_grid(config["sae"]["sweeps"])}), "dataset": 1}
    assert encoding >= (1 + len(config.get("encode", {}).get("datasets", []))) * per_dataset[group_by]
    assert "projected activation caches" in proc.stderr
    # The latent analyses: one evaluation set, every SAE characterised, the four figures.
    assert jobs["evalset_cluster"] == 1 and jobs["family_labels"] == 1 and jobs["evalset_split"] == 1
    for rule in ("family_specificity", "activation_patterns"):
        assert jobs[rule] == n_saes
    figures = {"per_layer": "layers", "k": "k", "width": "width"} | config.get("latents", {}).get("figures", {})
    figures_per_sweep = {"per_layer": 2, "k": 1, "width": 1}  # 3c and 3d; 7a; 7b
    assert jobs["latent_figure"] == sum(n for key, n in figures_per_sweep.items() if figures[key])
    # The probes: one task job each; raw at every layer and every probed SAE, per task; Figs 4 and 9.
    tasks = config["probes"]["tasks"]
    probed_sweeps = config["probes"].get("sweeps") or [sweep["name"] for sweep in config["sae"]["sweeps"]]
    n_probed = len(sae_grid([s for s in config["sae"]["sweeps"] if s["name"] in probed_sweeps]))
    assert jobs["probe_task"] == len(tasks)
    assert jobs["probe_fit"] == len(tasks) * (len(config["layers"]) + n_probed)
    assert jobs["probe_figure"] == 2 and jobs["probe_summary"] == 1
    # The latent browser: every SAE's examples on the evaluation set (and on the structure
    # dataset, when that is another), its pages, the shared files and the index.
    structures = config["browser"]["structures"]
    shown = 1 + (structures["dataset"] != config["evalset"]["dataset"])
    assert jobs["browser_examples"] == shown * n_saes and jobs["browser_sae"] == n_saes
    assert jobs["browser_index"] == jobs["browser_shared"] == jobs["browser_structures"] == 1
    assert jobs["browser_structure_index"] == 1
    # Attention heads in SAE features: every block with an SAE of the layer sweep on both sides, for
    # transformer models only (UniRep has no attention).
    layers = set(next(sweep["layers"] for sweep in config["sae"]["sweeps"] if sweep["name"] == "layers"))
    last = {"tiny_esm2": 3, "esm2": 33}.get(config["model"]["kind"])  # read after ESM-2's final norm: left out
    blocks = [layer for layer in layers if layer - 1 in layers and layer != last] if last else []
    assert jobs.get("heads_block", 0) == len(blocks) and jobs.get("heads_figure", 0) == (1 if blocks else 0)


def test_a_bad_structure_dataset_names_the_key(tmp_path):
    returncode, text = dry_run_of(tmp_path, lambda c: c["browser"]["structures"].update(dataset="uniref50"))
    assert returncode != 0 and "browser.structures.dataset is 'uniref50'" in text


def test_paper_config_is_paper_scale():
    config = yaml.safe_load((Path(REPO) / "config/esm2_650m.yaml").read_text())
    assert config["datasets"]["uniref50"]["n_sequences"] == 1_000_000
    assert config["layers"] == list(range(4, 34))
    sweeps = {s["name"]: s for s in config["sae"]["sweeps"]}
    assert sweeps["k"]["k"] == [16, 32, 64, 128, 256] and sweeps["k"]["width"] == [8192]
    assert sweeps["layers"]["k"] == [64] and sweeps["layers"]["width"] == [4096]


def test_derived_datasets_are_declared_once(tmp_path):
    """The evaluation set and the probe tasks are datasets the workflow makes; declaring one again
    under datasets is an error that names both places."""
    work = workdir_copy(tmp_path)
    bad = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    bad["datasets"]["swissprot"] = {"fasta": "results/evalsets/swissprot/representatives.fasta", "n_sequences": 100}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "bad.yaml")], cwd=work, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "datasets.swissprot" in text and "evalset.sample" in text


SITECUSTOMIZE = """
import atexit, sys
atexit.register(lambda: open({out!r}, "w").write("\\n".join(sorted(sys.modules))))
"""


def test_building_the_dag_imports_nothing_heavy(tmp_path):
    """A dry run of the paper config loads neither torch nor transformers, and of protsae only the
    light modules (pyarrow comes with pandas, which Snakemake's SLURM plugin imports itself)."""
    work = workdir_copy(tmp_path)
    config = yaml.safe_load((Path(REPO) / "config/esm2_650m.yaml").read_text())
    for path in user_inputs(config):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).touch()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(out=str(tmp_path / "modules.txt")))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(SNAKEMAKE + ["-n", "--quiet", "--configfile", "config/esm2_650m.yaml"], cwd=work,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    modules = set((tmp_path / "modules.txt").read_text().split())
    assert "protsae.spec" in modules  # the hook saw the workflow's imports
    assert not {"torch", "transformers"} & modules
    assert {m for m in modules if m.startswith("protsae")} == {
        "protsae", "protsae.spec", "protsae.configcheck", "protsae.activations", "protsae.activations.sizes",
        "protsae.costs"}


def dry_run_of(tmp_path, edit, name="edited.yaml"):
    """A dry run of the tiny config after ``edit(config)``, not checked."""
    config = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    edit(config)
    (tmp_path / name).write_text(yaml.safe_dump(config))
    proc = snakemake(["-n", "--configfile", str(tmp_path / name)], cwd=workdir_copy(tmp_path / name.split(".")[0]),
                     check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["activations"].update(max_tokenz=10),
         "edited.yaml: unknown key activations.max_tokenz; activations takes: compression, gpus, layout, max_tokens,"),
        (lambda c: c.update(layerz=[1]), "edited.yaml: unknown key layerz; the top level takes: activations,"),
        (lambda c: c["sae"]["training"].update(batch_size="big"),
         "edited.yaml: sae.training.batch_size: 'big' is not of type 'integer'\n  expected: type integer, minimum 1"),
    ],
)
def test_a_bad_config_names_the_key_in_a_few_lines(tmp_path, edit, expected):
    returncode, text = dry_run_of(tmp_path, edit)
    assert returncode != 0 and expected in text
    assert len(text.splitlines()) < 10, text  # not the whole schema (Snakemake's message had 1,700 lines)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c.update(layers=[1, 4]), "layers: [4] beyond model tiny_esm2, which has 3 blocks (layers 0..3)"),
        (lambda c: c["datasets"]["uniref50"].update(max_length=1500),
         "datasets.uniref50.max_length is 1500, but model tiny_esm2 accepts at most 1024 residues"),
        (lambda c: c["evalset"].update(max_length=1100),
         "evalset.max_length is 1100, but model tiny_esm2 accepts at most 1024 residues"),
    ],
)
def test_layers_and_lengths_beyond_the_model_fail_at_dag_time(tmp_path, edit, expected):
    returncode, text = dry_run_of(tmp_path, edit)
    assert returncode != 0 and expected in text, text
    assert "Job stats" not in text


def test_model_limits_are_known_from_the_id_without_weights(tmp_path):
    """The paper config's ESM-2 650M: 33 blocks and 1024 residues, from its id alone."""
    config = yaml.safe_load((Path(REPO) / "config/esm2_650m.yaml").read_text())
    config["layers"] = config["layers"] + [34]
    (tmp_path / "deep.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "deep.yaml")], cwd=workdir_copy(tmp_path), check=False)
    assert proc.returncode != 0
    assert "layers: [34] beyond model esm2_t33_650M, which has 33 blocks" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_tiny_config_end_to_end(tiny_run, tmp_path):
    work = tiny_run
    config = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    results = work / "results" / config["model"]["name"]

    # Activation shards read back with the documented schema; the manifest matches them.
    for layer in config["layers"]:
        manifest = json.loads((results / f"activations/uniref50/layer{layer}/manifest.json").read_text())
        assert manifest["layer"] == layer and manifest["n_shards"] == 2
        assert manifest["n_sequences"] == config["datasets"]["uniref50"]["n_sequences"]
        total = 0
        for index, shard in enumerate(manifest["shards"]):
            assert shard["path"].endswith(f"activations/uniref50/shard{index}/layer{layer}.parquet")
            table = pq.read_table(work / shard["path"])
            assert table.schema.field("act").type == pa.binary(2 * manifest["d_model"])
            assert manifest["act_layout"] == "fixed_size_binary" and read_acts(table).shape[1] == manifest["d_model"]
            assert table.schema.field("pos").type == pa.int32()
            assert table.schema.field("seq_id").type == pa.string()
            total += table.num_rows
        assert total == manifest["n_tokens"] == manifest["n_residues"]

    # Every SAE of the sweeps has weights, a self-describing config, metrics and a loss curve.
    summary = (results / "sae/uniref50/summary.tsv").read_text().splitlines()
    assert len(summary) == 1 + 6  # header + topk (1,4,64) (2,4,64) (2,2,64) + 3 variants at (2,4,64)
    assert "delta_ce" in summary[0].split("\t")
    sae = results / "sae/uniref50/layer2/topk_k4_w64"
    metrics = json.loads((sae / "metrics.json").read_text())
    for key in ("heldout_fvu", "heldout_l0", "dead_share", "heldout_mse"):
        assert key in metrics
    assert 0 < metrics["heldout_l0"] <= 4 and 0 < metrics["heldout_fvu"] < 1
    sae_config = json.loads((sae / "config.json").read_text())
    assert sae_config["k"] == 4 and sae_config["n_latents"] == 64 and sae_config["d_model"] == 32
    assert (sae / "loss_curve.png").stat().st_size > 10_000
    assert (sae / "sae.safetensors").exists()
    splice = json.loads((sae / "splice.json").read_text())
    assert abs(splice["delta_ce_with_error"]) < 1e-4 < splice["delta_ce"]
    assert splice["ce_zero"] > splice["ce_clean"]
    for sweep in ("layers", "k"):
        assert (results / f"figures/sae_sweep_{sweep}.png").stat().st_size > 20_000
    for variant in ("batchtopk", "matryoshka", "relu_l1"):
        variant_config = json.loads((results / f"sae/uniref50/layer2/{variant}_k4_w64/config.json").read_text())
        assert variant_config["variant"] == variant
    codes = pq.read_table(results / "codes/uniref50/layer2/topk_k4_w64/shard1.parquet")
    assert codes.schema.field("idx").type == list_type(pa.int32(), 4)
    assert codes.schema.field("val").type == list_type(pa.float32(), 4)
    assert codes.num_rows == pq.ParquetFile(results / "activations/uniref50/shard1/layer2.parquet").metadata.num_rows
    for log in ("sequences/uniref50.log", "activations/uniref50/shard0.log"):
        assert (work / "logs" / config["model"]["name"] / log).stat().st_size > 0
    sae_log = (work / "logs" / config["model"]["name"] / "sae/uniref50/layer1/topk_k4_w64.log").read_text()
    assert f"freed memory reused (glibc): {malloc.is_glibc()}" in sae_log  # protsae.malloc, in the job

    # Latent characterisation: the clustered evaluation set, its labels and split, then per SAE the
    # family F1 table, gap candidates and pattern classes; the summary and the figures.
    evalset = work / "results/evalsets/swissprot"
    clusters = pd.read_csv(evalset / "clusters.tsv", sep="\t")
    representatives = set(clusters["representative"])
    split = pd.read_csv(results / "latents/swissprot/split.tsv", sep="\t").set_index("protein")
    assert set(split.index) == representatives  # all 47 fit under n_sequences
    assert set(split["split"]) == {"train", "test"}
    labels = pd.read_csv(evalset / "families.tsv", sep="\t")
    assert set(labels["protein"]) <= representatives and set(labels["source"]) == {"swissprot_dat"}
    latents = results / "latents/swissprot/layer2/topk_k4_w64"
    f1 = pd.read_csv(latents / "family_f1.tsv", sep="\t")
    assert len(f1) == 64 and set(f1["status"]) <= {"scored", "never_fires_on_train", "top_protein_unlabelled"}
    scored = f1[f1["status"] == "scored"]
    assert scored["test_f1"].between(0, 1).all() and scored["threshold"].isin(np.arange(1, 10) / 10).all()
    patterns = pd.read_csv(latents / "patterns.tsv", sep="\t")
    assert len(patterns) == 64 and patterns["pattern"].isin(PATTERNS).all()
    gaps = pd.read_csv(latents / "gap_candidates.tsv", sep="\t")
    specific = set(scored.loc[scored["test_f1"] > 0.7, "latent"])
    assert set(gaps["latent"]) <= specific and set(gaps["protein"]) <= set(split.index[split["split"] == "test"])
    latent_summary = pd.read_csv(results / "latents/swissprot/summary.tsv", sep="\t")
    assert len(latent_summary) == 6
    assert (latent_summary[[f"pattern_{p}" for p in PATTERNS]].sum(axis=1) == latent_summary["width"]).all()
    for figure in ("fig3c_patterns_per_layer", "fig3d_family_specific_per_layer", "fig7a_k_sweep"):
        assert (results / f"figures/{figure}.png").stat().st_size > 20_000
    assert not (results / "figures/fig7b_width_sweep.png").exists()  # tiny has no width sweep

    # Steering: the family-specific latents (test F1 > 0.7) of each SAE, each aligned with its
    # family's BLAST hits, steered with a random control at multiplier 0 and the config's.
    steering = results / "steering/swissprot"
    n_steered = 0
    for sae_dir in sorted(steering.glob("layer*/*")):
        f1 = pd.read_csv(results / "latents/swissprot" / sae_dir.relative_to(steering) / "family_f1.tsv", sep="\t")
        aligned = pd.read_csv(sae_dir / "latents.tsv", sep="\t")
        assert set(aligned["latent"]) <= set(f1.loc[f1["test_f1"] > 0.7, "latent"])
        if aligned.empty:
            continue
        columns = pd.read_csv(sae_dir / "alignment_columns.tsv", sep="\t", keep_default_na=False)
        assert columns["occupancy"].between(0, 1).all() and set(columns["symbol"]) <= {"*", ":", ".", " "}
        metrics = pd.read_csv(sae_dir / "metrics.tsv", sep="\t")
        n_steered += metrics.query("kind == 'family'")["latent"].nunique()
        assert sorted(metrics["multiplier"].unique()) == [0, 0.5, 1, 1.5, 2, 4]
        n_aligned = int((aligned["status"] == "aligned").sum())
        assert metrics.groupby("kind")["latent"].nunique().to_dict() == {"control": n_aligned, "family": n_aligned}
        assert metrics["unchanged_vs_original"].dropna().between(0, 1).all()
        every = metrics[metrics["conservation"] == "all"]
        classes = metrics[metrics["conservation"] != "all"].groupby(["kind", "steered_latent", "seq_id", "multiplier"])
        assert (classes["n_residues"].sum().to_numpy() == every.set_index(
            ["kind", "steered_latent", "seq_id", "multiplier"]).loc[classes["n_residues"].sum().index, "n_residues"]).all()
    assert n_steered > 0
    assert len(pd.read_csv(steering / "summary.tsv", sep="\t")) > 0
    assert (results / "figures/fig6_steering.png").stat().st_size > 20_000

    # Probes: each task split by homology clusters (no cluster on two sides), then raw and SAE
    # probes per layer, their top coefficients (with example proteins for SAE latents), Figs 4, 9.
    for task in config["probes"]["tasks"]:
        task_labels = pd.read_csv(work / f"results/probes/{task}/labels.tsv", sep="\t")
        assert task_labels.groupby("cluster")["split"].nunique().max() == 1
        assert set(task_labels["split"]) == {"train", "valid", "test"}
    probes = pd.read_csv(results / "probes/summary.tsv", sep="\t")
    assert len(probes) == 2 * (2 + 2)  # 2 tasks x (raw at layers 1, 2 + the layer sweep's 2 SAEs)
    assert probes["test_score"].between(0, 1).all() and set(probes["metric"]) == {"accuracy"}
    top = pd.read_csv(results / "probes/localization/layer2/topk_k4_w64/top_coefficients.tsv", sep="\t")
    assert {"class", "sign", "feature", "coefficient", "protein", "active_residues"} <= set(top.columns)
    assert len(top) > 0 and top["max_activation"].gt(0).all()
    for figure in ("fig4_probes_per_layer", "fig9_probe_coefficients"):
        assert (results / f"figures/{figure}.png").stat().st_size > 20_000
    # Bootstrap intervals beside every probe metric and the family-specific counts (percentile
    # intervals need not hold the point estimate, so only their order is checked).
    assert (probes["test_score_low"] <= probes["test_score_high"]).all()
    assert set(probes["bootstrap_unit"]) == {"cluster"} and (probes["bootstrap_n_resamples"] == 200).all()
    assert (latent_summary["n_family_specific_low"] <= latent_summary["n_family_specific_high"]).all()
    # Sparse probes: localisation on raw dimensions and SAE latents at k = 1, 2, 5; the families
    # (tiny caches the evaluation set, so they get a raw baseline too) where any has 2 train members.
    sparse = pd.read_csv(results / "sparse_probes/summary.tsv", sep="\t")
    localization = sparse[sparse["task"] == "localization"]
    assert len(localization) == 3 * (2 + 2) and set(localization["k"]) == {1, 2, 5}
    assert set(localization["kind"]) == {"raw", "sae"} and localization["accuracy"].between(0, 1).all()
    assert (localization["accuracy_low"] <= localization["accuracy_high"]).all()
    assert (results / "sparse_probes/families/layer2/topk_k4_w64/result.json").exists()

    # Concept coverage: the fixture's Swiss-Prot features on the evaluation set, DSSP runs on the
    # structure task's chains, amino acids apart; every SAE and the raw dimensions of both layers.
    concepts = pd.read_csv(results / "concepts/summary.tsv", sep="\t")
    assert len(concepts) == 6 + 2 and set(concepts["features"]) == {"sae", "raw"}
    assert (concepts["concepts_evaluated"] > 0).all() and concepts["coverage"].between(0, 1).all()
    assert (concepts.loc[concepts["features"] == "raw", "n_units"] == 2 * 32).all()  # each sign of d_model
    assert (concepts["concepts_evaluated"] == concepts["swissprot_evaluated"] + concepts["probe_secondary_structure_evaluated"]).all()
    pairs = pd.read_csv(results / "concepts/sae/layer2/topk_k4_w64/best_pairs.tsv", sep="\t")
    assert set(pairs["source"]) == {"Swiss-Prot", "DSSP", "AA"} and pairs["unit"].between(0, 63).all()
    assert pairs["threshold"].isin([0, 0.15, 0.5, 0.6, 0.8]).all() and pairs["test_f1"].between(0, 1).all()
    assert (pairs["covered"] == (pairs["max_test_f1"] > 0.5)).all()
    concept_split = pd.read_csv(results / "concepts/datasets/swissprot/split.tsv", sep="\t")
    assert set(concept_split["split"]) == {"reference", "valid", "test"}
    reference = set(concept_split.loc[concept_split["split"] == "reference", "protein"])
    assert reference == set(split.index[split["split"] == "train"])  # under max_reference: every train protein
    assert (results / "figures/fig10_concept_coverage.png").stat().st_size > 20_000

    # Feature network of the layer sweep (layers 1 and 2): every kind of edge, each latent's
    # neighbours, GraphML that parses, the figure, and the causal sources that were chosen.
    network = results / "networks/swissprot/layers"
    edges = pd.read_csv(network / "edges.tsv.gz", sep="\t")
    assert set(edges["kind"]) == {"coactivation", "decoder", "causal"}
    assert (edges.loc[edges["kind"] == "decoder", "source_layer"] == 1).all() and (edges["kind"] == "decoder").sum() == 64
    assert edges.loc[edges["kind"] == "coactivation", "weight"].between(-1, 1).all()
    within = edges[(edges["kind"] == "coactivation") & (edges["source_layer"] == edges["target_layer"])]
    assert set(within["source_layer"]) == {1, 2} and (within["source"] < within["target"]).all()
    summary = json.loads((network / "summary.json").read_text())
    assert summary["edges_by_kind"]["causal"] == (edges["kind"] == "causal").sum() > 0
    assert summary["strongest_causal"][0]["effect"] == pytest.approx(edges.loc[edges["kind"] == "causal", "weight"].abs().max(), rel=1e-5)
    assert ET.parse(network / "network.graphml").getroot().tag.endswith("graphml")
    assert json.loads((network / "neighbours/layer1.json").read_text())
    assert (results / "figures/fig11_feature_network.png").stat().st_size > 20_000

    # Attention heads of block 2 (SAEs of layers 1 and 2): four heads, each with a role, a
    # window-normalised offset profile per source, the OV and QK tables and the figure.
    heads_dir = results / "heads/swissprot/layers"
    heads = pd.read_csv(heads_dir / "heads.tsv", sep="\t")
    assert list(heads["head"]) == [0, 1, 2, 3] and set(heads["block"]) == {2}
    assert heads["role"].isin(["previous", "next", "periodic_helix", "periodic_strand", "copy", "other"]).all()
    assert heads["window_share"].between(0, 1).all()
    profiles = pd.read_csv(heads_dir / "profiles.tsv", sep="\t")
    assert len(profiles) == 4 * 17
    assert profiles.groupby("head")[["predicted", "measured"]].sum().to_numpy() == pytest.approx(1.0)
    ov = pd.read_csv(heads_dir / "ov.tsv.gz", sep="\t")
    assert ov.groupby(["head", "source"]).size().eq(5).all() and ov["target"].between(0, 63).all()
    assert set(pd.read_csv(heads_dir / "qk.tsv.gz", sep="\t")["offset"]) == set(range(-8, 9))
    summary = json.loads((heads_dir / "summary.json").read_text())
    assert summary["n_heads"] == 4 and sum(summary["roles"].values()) == 4
    assert (results / "figures/fig12_head_roles.png").stat().st_size > 20_000

    # The latent browser: an index of the 6 SAEs, each with its pages (tests/browser checks them).
    browser = results / "browser"
    assert (browser / "index.html").exists() and len(list(browser.glob("layer*/*/latents/0.js"))) == 6
    assert len(list((browser / "structures").glob("*.js"))) > 0

    # Nothing changed: nothing to do.
    proc = snakemake(["-n", "--configfile", "config/tiny.yaml"], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # Outputs honour the umask (the run above used 022): readable by the group and others.
    for path in (results / "sae/uniref50/summary.tsv", sae / "sae.safetensors", sae / "metrics.json",
                 results / "activations/uniref50/shard0/layer1.parquet", results / "latents/swissprot/summary.tsv",
                 results / "codes/uniref50/layer2/topk_k4_w64/shard1.parquet", results / "figures/fig4_probes_per_layer.png"):
        assert path.stat().st_mode & 0o777 == 0o644, path

    # Where and how jobs run changes no number, so it reruns nothing: moving to a GPU node (model,
    # SAE training, evaluation and encoding devices), threads, memory, runtime, checkpoint cadence,
    # the projected mean length.
    moved = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    moved["model"] |= {"device": "cuda", "allow_download": True}
    moved["sae"]["training"] |= {"device": "cuda", "threads": 8, "mem_mb": 64000, "runtime": 600, "gpus": 1,
                                 "checkpoint_minutes": 5, "checkpoint_every": 3}
    moved["sae"]["evaluation"] |= {"device": "cuda:0", "gpus": 1}
    moved["encode"] |= {"device": "cuda", "gpus": 1, "threads": 4}
    moved["activations"] |= {"threads": 8, "gpus": 1, "mem_mb": 1000, "runtime": 5}
    moved["datasets"]["uniref50"]["expected_mean_length"] = 999
    moved["evalset"]["sample"]["expected_mean_length"] = 999
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(moved))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "moved.yaml")], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout

    # What changes numbers reruns exactly what depends on it: the splice evaluation's seed reruns
    # every SAE's evaluation, the summary and the sweep figures, nothing upstream or downstream.
    reseeded = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    reseeded["sae"]["evaluation"]["seed"] = 1
    (tmp_path / "reseeded.yaml").write_text(yaml.safe_dump(reseeded))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "reseeded.yaml")], cwd=work)
    # The browser's index shows the SAE metrics, so it is rebuilt; no SAE's pages are.
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "all": 1, "evaluate_sae": 6, "sae_summary": 1, "sae_sweep_figure": 2, "browser_index": 1,
    }

    # Changing one SAE's k reruns only that SAE, its codes, latent tables and steering, and the
    # summaries and figures built on them.
    changed = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    changed["sae"]["sweeps"][1]["k"] = [2, 8]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed, sort_keys=True))  # reordered too
    proc = snakemake(["-n", "--configfile", str(tmp_path / "changed.yaml")], cwd=work)
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "all": 1, "train_sae": 1, "evaluate_sae": 1, "sae_summary": 1, "sae_sweep_figure": 2,
        "encode_codes_uniref50_layer2_topk_k8_w64": 1, "encode_codes_swissprot_layer2_topk_k8_w64": 1,
        "family_specificity": 1, "activation_patterns": 1, "latent_summary": 1,
        "latent_figure": 1, "family_alignments": 1, "steer_sae": 1, "steering_summary": 1, "steering_figure": 1,
        # The browser: the new SAE's codes of the structure dataset, its examples there and on the
        # evaluation set, its pages, the structure files the SAEs show, and the index.
        "encode_codes_probe_secondary_structure_layer2_topk_k8_w64": 1, "browser_examples": 2, "browser_sae": 1,
        "browser_structures": 1, "browser_index": 1,
        # Its concept coverage (a sweep of each dataset's codes, merged), the coverage table and
        # figure; not the raw baseline, which no SAE changes.
        "concept_sweep": 2, "concept_coverage": 1, "concept_summary": 1, "concept_figure": 1,
    }

    # Changing one concept dataset reruns its table, each SAE's sweep of that dataset only (not of
    # the evaluation set, nor the evaluation set's encoding) and the raw dimensions' sweep of it,
    # each SAE's and each layer's merge, the summary and the figure.
    recut = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    recut["concepts"]["datasets"]["probe_secondary_structure"]["amino_acids"] = False
    (tmp_path / "recut.yaml").write_text(yaml.safe_dump(recut))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "recut.yaml")], cwd=work)
    text = proc.stdout + proc.stderr
    assert planned_jobs(text) == {
        "all": 1, "concept_table": 1, "concept_sweep": 6, "concept_coverage": 6, "concept_sweep_raw": 1,
        "concept_coverage_raw": 2, "concept_summary": 1, "concept_figure": 1,
    }
    assert "concepts/datasets/probe_secondary_structure/concepts.tsv.gz" in text
    swept = re.findall(r"^    output: \S+/concepts/sae/\S+/(\w+)_pairs\.parquet$", text, re.M)
    assert len(swept) == 6 and set(swept) == {"probe_secondary_structure"}
    swept_raw = re.findall(r"^    output: (\S+/concepts/raw/layer\d/\w+_pairs\.parquet.*)$", text, re.M)
    assert len(swept_raw) == 1 and "swissprot" not in swept_raw[0], swept_raw

    # One figure rebuilds only itself when asked for by name.
    figure = results / "figures/fig3c_patterns_per_layer.png"
    figure.unlink()
    proc = snakemake([str(figure.relative_to(work)), "-n", "--configfile", "config/tiny.yaml"], cwd=work)
    assert planned_jobs(proc.stdout + proc.stderr) == {"latent_figure": 1}


@pytest.mark.parametrize(("group_by", "jobs"), [("sae", 20), ("layer", 8), ("dataset", 4)])
def test_encoding_jobs_per_group(tmp_path, group_by, jobs):
    """One job per (dataset, SAE), per (dataset, layer) or per dataset, each covering every shard."""
    returncode, text = dry_run_of(tmp_path, lambda c: c["encode"].update(group_by=group_by))
    assert returncode == 0, text
    encoding = {rule: n for rule, n in planned_jobs(text).items() if rule.startswith("encode_codes_")}
    assert sum(encoding.values()) == len(encoding) == jobs
    # The evaluation set is encoded from the model when asked; the probe tasks and the training set
    # are cached anyway, so they are always encoded from their caches.
    returncode, text = dry_run_of(tmp_path, lambda c: c["encode"].update(group_by=group_by, source="model"),
                                  name="model.yaml")
    assert returncode == 0 and "swissprot" not in planned_caches(text) and "probe_localization" in planned_caches(text)


def planned_caches(text: str) -> set[str]:
    """Datasets with a caching job in a dry run's plan."""
    return set(re.findall(r"activations/([^/\s]+)/shard\d+\b", text))


def one_pass_config() -> dict:
    """The tiny config, encoding the evaluation set straight from the model in one pass per dataset
    (no dense cache) and keeping no intermediates: the second fresh run's."""
    config = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    config["encode"] |= {"source": "model", "group_by": "dataset"}
    config["keep_intermediates"] = False
    return config


def check_second_fresh_run(tiny_run: Path, again: Path, rerun, config_path: Path,
                           left_out: tuple[str, ...] = ()) -> None:
    """What a second fresh run (``one_pass_config``, at ``config_path``) must leave: no dense cache of
    the evaluation set, no code shards of the evaluation set and the probe tasks, no dense caches of
    the probe tasks, nothing to do for ``rerun`` (a function that runs snakemake again), a changed
    concept dataset that re-encodes only its own dataset, and every result table byte-identical to
    the first run's (but those under the result folders ``left_out``, stages the second run does
    not have)."""
    results = again / "results/tiny_esm2"
    assert not (results / "activations/swissprot").exists()
    for dataset in ["swissprot", "probe_localization", "probe_secondary_structure"]:
        assert list((results / "codes" / dataset).rglob("*.parquet")) == [], dataset
    for task in ["probe_localization", "probe_secondary_structure"]:
        assert list((results / "activations" / task).rglob("*.parquet")) == [], task
        assert (results / "activations" / task / "layer1/manifest.json").exists()
    layers = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())["layers"]
    assert len(list((results / "activations/uniref50").rglob("*.parquet"))) == 2 * len(layers)
    assert list(results.rglob("maxima.npz"))
    proc = rerun()
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # The code shards are gone, so the sweeps of a changed concept dataset need that dataset encoded
    # again, and only that one: the evaluation set's codes and sweeps are not redone.
    changed = yaml.safe_load(config_path.read_text())
    changed["concepts"]["datasets"]["probe_secondary_structure"]["amino_acids"] = False
    changed_path = config_path.with_name(f"{config_path.stem}_concepts_changed.yaml")
    changed_path.write_text(yaml.safe_dump(changed))
    proc = snakemake(["-n", "--configfile", str(changed_path)], cwd=again)
    text = proc.stdout + proc.stderr
    jobs = planned_jobs(text)
    assert jobs["concept_table"] == 1 and jobs["encode_codes_probe_secondary_structure_layers1_2"] == 1, jobs
    assert not [rule for rule in jobs if rule.startswith(("encode_codes_swissprot", "encode_codes_uniref50"))], jobs
    swept = re.findall(r"^    output: \S+/concepts/sae/\S+/(\w+)_pairs\.parquet$", text, re.M)
    assert swept and set(swept) == {"probe_secondary_structure"}
    first, second = result_tables(tiny_run), result_tables(again)
    first = {path: table for path, table in first.items()
             if not any(str(path).startswith(f"results/tiny_esm2/{folder}/") for folder in left_out)}
    # The families' sparse probes on raw dimensions need the evaluation set's dense cache, which
    # the first run has (encode.source: cache) and this one never writes (probes.sparse.families_raw
    # auto): those fits, and their rows of the sparse summary, are the first run's alone.
    raw_families = {path for path in first if "sparse_probes/families/" in str(path) and "/raw/" in str(path)}
    assert raw_families and len(first) > 40 and first.keys() - raw_families == second.keys()
    sparse_summary = Path("results/tiny_esm2/sparse_probes/summary.tsv")
    assert [path for path in second if first[path] != second[path]] == [sparse_summary]
    first_rows = pd.read_csv(tiny_run / sparse_summary, sep="\t")
    first_rows = first_rows[~((first_rows["task"] == "families") & (first_rows["kind"] == "raw"))]
    pd.testing.assert_frame_equal(first_rows.reset_index(drop=True), pd.read_csv(again / sparse_summary, sep="\t"))
    summary = (tiny_run / "results/tiny_esm2/sae/uniref50/summary.tsv").read_text().splitlines()[0].split("\t")
    assert "heldout_fvu" in summary and not {"train_seconds", "tokens_per_s"} & set(summary)


@pytest.mark.slow
@pytest.mark.skipif(slurm_is_up(), reason="a SLURM is up: test_slurm makes this second fresh run through it")
def test_two_fresh_runs_give_byte_identical_tables(tiny_run, tmp_path):
    """Every result table (TSV, CSV) of a second fresh run, byte for byte; timing stays out of them.
    The second run encodes the evaluation set straight from the model in one pass per dataset, which
    gives the same codes as the cache, and keeps no intermediates (`check_second_fresh_run`). Where
    a SLURM is up (CI), test_slurm makes this run through sbatch instead, with the same checks."""
    again = workdir_copy(tmp_path)
    (tmp_path / "one_pass.yaml").write_text(yaml.safe_dump(one_pass_config()))
    args = ["--cores", "2", "--configfile", str(tmp_path / "one_pass.yaml")]
    snakemake(args, cwd=again)
    check_second_fresh_run(tiny_run, again, lambda: snakemake(args, cwd=again), tmp_path / "one_pass.yaml")


@pytest.mark.slow
def test_a_corrupted_shard_stops_the_jobs_that_read_it_and_the_log_says_why(tiny_run):
    work = tiny_run
    results, logs = Path("results/tiny_esm2"), work / "logs/tiny_esm2"
    # Bit rot (mtime kept): Snakemake sees nothing; training, forced, checks the shard before use.
    rotten = results / "activations/uniref50/shard0/layer1.parquet"
    flip_byte(work / rotten, keep_mtime=True)
    target = results / "sae/uniref50/layer1/topk_k4_w64/metrics.json"
    proc = snakemake([str(target), "-n", *TINY], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    proc = snakemake([str(target), "--cores", "1", "--forcerun", "train_sae", *TINY], cwd=work, check=False)
    assert proc.returncode != 0
    log = (logs / "sae/uniref50/layer1/topk_k4_w64.log").read_text()
    assert f"ShardIntegrityError: activation shard {rotten} does not match the checksum recorded" in log
    folder = rotten.parent
    assert "Traceback (most recent call last)" in log and f"rm -rf {folder} && snakemake --cores all {folder}" in log

    # An edit (its mtime moves) inside a shard's folder: Snakemake tracks the folder by the
    # timestamp it left when the caching job ended, so it plans nothing; a job that reads the file
    # stops on its checksum, and the manifest, made from what the caching job recorded, stays.
    edited = results / "activations/uniref50/shard1/layer2.parquet"
    flip_byte(work / edited, keep_mtime=False)
    manifest = results / "activations/uniref50/layer2/manifest.json"
    before = (work / manifest).read_bytes()
    codes = results / "codes/uniref50/layer2/topk_k4_w64"
    proc = snakemake([str(codes), "--cores", "1", "--forcerun", str(codes), *TINY], cwd=work, check=False)
    assert proc.returncode != 0 and (work / manifest).read_bytes() == before
    log = (logs / "codes/uniref50_layer2_topk_k4_w64.log").read_text()
    assert f"activation shard {edited} does not match the checksum recorded when it was written" in log

    # The command the message gives rebuilds the shard (and then the manifest).
    subprocess.run(["rm", "-rf", str(work / edited.parent)], check=True)
    snakemake([str(edited.parent), str(manifest), "--cores", "1", *TINY], cwd=work)
    rebuilt = json.loads((work / manifest).read_text())["shards"][1]
    assert rebuilt["path"] == str(edited) and rebuilt["sha256"] == file_sha256(work / edited)


def test_slurm_profile_resolves_by_name(tmp_path):
    """`snakemake --profile slurm` from the repository root, after set-up linked the profile."""
    env = os.environ | {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    link = subprocess.run(["bash", "profiles/link_slurm_profile.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    assert "linked SLURM profile" in link.stdout
    assert (tmp_path / "xdg/snakemake/slurm").resolve() == Path(REPO, "profiles/slurm").resolve()
    work = workdir_copy(tmp_path)
    proc = subprocess.run(SNAKEMAKE + ["--profile", "slurm", "-n", "--configfile", "config/tiny.yaml"],
                          cwd=work, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Using profile slurm" in text and "cache_activations" in text
