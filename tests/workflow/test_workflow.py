"""The Snakemake workflow: lint, dry-runs of every config, and a real run of the tiny config."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from protsae.activations.storage import list_type
from protsae.latents.patterns import PATTERNS
from protsae.spec import user_inputs

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_PARTS = ["Snakefile", "rules", "config", "workflow", "envs", "resources/demo"]


def workdir_copy(tmp_path: Path) -> Path:
    """A working directory that sees the workflow through symlinks and keeps results apart
    (resources/ is a real folder, so inputs a test adds there stay out of the repository)."""
    work = tmp_path / "work"
    (work / "resources").mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        (work / part).symlink_to(Path(REPO) / part)
    return work


def snakemake(args, cwd, check=True, umask=None):
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, env=env,
                          umask=-1 if umask is None else umask)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


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
    assert jobs["train_sae"] == n_saes
    # Cached: the training set, the probe tasks (raw probes read their activations) and, when codes
    # come from the cache, the evaluation set; the last two are sampled as their sections say.
    shards = config["datasets"]["uniref50"]["n_shards"]
    shards += sum(task.get("sample", {}).get("n_shards", 1) for task in config["probes"]["tasks"].values())
    if config.get("encode", {}).get("source", "cache") == "cache":
        shards += config["evalset"].get("sample", {}).get("n_shards", 1)
    assert jobs["cache_activations"] == shards
    assert jobs["activation_manifest"] == len(config["layers"])
    assert "projected activation caches" in proc.stderr
    # The latent analyses: one evaluation set, every SAE characterised, the four figures.
    assert jobs["evalset_cluster"] == 1 and jobs["family_labels"] == 1 and jobs["evalset_split"] == 1
    for rule in ("protein_maxima", "family_specificity", "activation_patterns"):
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
        "protsae", "protsae.spec", "protsae.activations", "protsae.activations.sizes"}


def test_bad_config_names_the_key(tmp_path):
    work = workdir_copy(tmp_path)
    bad = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    bad["activations"]["max_tokenz"] = 10
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(["-n", "--configfile", str(tmp_path / "bad.yaml")], cwd=work, check=False)
    assert proc.returncode != 0 and "max_tokenz" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_tiny_config_end_to_end(tmp_path):
    work = workdir_copy(tmp_path)
    snakemake(["--cores", "2", "--configfile", "config/tiny.yaml"], cwd=work, umask=0o022)
    config = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    results = work / "results" / config["model"]["name"]

    # Activation shards read back with the documented schema; the manifest matches them.
    for layer in config["layers"]:
        manifest = json.loads((results / f"activations/uniref50/layer{layer}/manifest.json").read_text())
        assert manifest["layer"] == layer and manifest["n_shards"] == 2
        assert manifest["n_sequences"] == config["datasets"]["uniref50"]["n_sequences"]
        total = 0
        for shard in manifest["shards"]:
            table = pq.read_table(work / shard["path"])
            assert table.schema.field("act").type == list_type(pa.float16(), manifest["d_model"])
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
    assert codes.num_rows == pq.ParquetFile(results / "activations/uniref50/layer2/shard1.parquet").metadata.num_rows
    for log in ("sequences/uniref50.log", "activations/uniref50/shard0.log"):
        assert (work / "logs" / config["model"]["name"] / log).stat().st_size > 0

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

    # Nothing changed: nothing to do.
    proc = snakemake(["-n", "--configfile", "config/tiny.yaml"], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # Outputs honour the umask (the run above used 022): readable by the group and others.
    for path in (results / "sae/uniref50/summary.tsv", sae / "sae.safetensors", sae / "metrics.json",
                 results / "activations/uniref50/layer1/shard0.parquet", results / "latents/swissprot/summary.tsv",
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
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "all": 1, "evaluate_sae": 6, "sae_summary": 1, "sae_sweep_figure": 2,
    }

    # Changing one SAE's k reruns only that SAE, its codes and latent tables, and the summaries
    # and figures built on it.
    changed = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    changed["sae"]["sweeps"][1]["k"] = [2, 8]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed, sort_keys=True))  # reordered too
    proc = snakemake(["-n", "--configfile", str(tmp_path / "changed.yaml")], cwd=work)
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "all": 1, "train_sae": 1, "evaluate_sae": 1, "encode_codes": 4, "sae_summary": 1, "sae_sweep_figure": 2,
        "protein_maxima": 1, "family_specificity": 1, "activation_patterns": 1, "latent_summary": 1,
        "latent_figure": 1,
    }

    # One figure rebuilds only itself when asked for by name.
    figure = results / "figures/fig3c_patterns_per_layer.png"
    figure.unlink()
    proc = snakemake([str(figure.relative_to(work)), "-n", "--configfile", "config/tiny.yaml"], cwd=work)
    assert planned_jobs(proc.stdout + proc.stderr) == {"latent_figure": 1}


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
