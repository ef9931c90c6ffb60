"""The Snakemake workflow: lint, dry-runs of every config, and a real run of the tiny config."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO
from protsae.activations import list_type

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


def snakemake(args, cwd, check=True):
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, env=env)
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


def test_lint_is_clean():
    proc = snakemake(["--lint"], cwd=REPO, check=False)
    text = proc.stdout + proc.stderr
    assert "Lint for rule" not in text and "Lints for" not in text, text


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/tiny.yaml", "config/esm2_650m.yaml"])
def test_dry_run(configfile, tmp_path):
    work = workdir_copy(tmp_path)
    config = yaml.safe_load((Path(REPO) / configfile).read_text())
    for dataset in config["datasets"].values():
        fasta = work / dataset["fasta"]
        if not fasta.exists():  # the paper's uniref50.fasta.gz is the user's to download
            fasta.parent.mkdir(parents=True, exist_ok=True)
            fasta.touch()
    proc = snakemake(["-n", "--configfile", configfile], cwd=work)
    jobs = planned_jobs(proc.stdout + proc.stderr)
    n_saes = len({(sweep.get("variant", "topk"), layer, k, width) for sweep in config["sae"]["sweeps"]
                  for layer in sweep["layers"] for k in sweep["k"] for width in sweep["width"]})
    assert jobs["train_sae"] == n_saes
    assert jobs["cache_activations"] == config["datasets"]["uniref50"]["n_shards"]
    assert jobs["activation_manifest"] == len(config["layers"])
    assert "projected activation caches" in proc.stderr


def test_paper_config_is_paper_scale():
    config = yaml.safe_load((Path(REPO) / "config/esm2_650m.yaml").read_text())
    assert config["datasets"]["uniref50"]["n_sequences"] == 1_000_000
    assert config["layers"] == list(range(4, 34))
    sweeps = {s["name"]: s for s in config["sae"]["sweeps"]}
    assert sweeps["k"]["k"] == [16, 32, 64, 128, 256] and sweeps["k"]["width"] == [8192]
    assert sweeps["layers"]["k"] == [64] and sweeps["layers"]["width"] == [4096]


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
    snakemake(["--cores", "2", "--configfile", "config/tiny.yaml"], cwd=work)
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

    # Nothing changed: nothing to do.
    proc = snakemake(["-n", "--configfile", "config/tiny.yaml"], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # Changing one SAE's k reruns only that SAE and the summary built on it.
    changed = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    changed["sae"]["sweeps"][1]["k"] = [2, 8]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed, sort_keys=True))  # reordered too
    proc = snakemake(["-n", "--configfile", str(tmp_path / "changed.yaml")], cwd=work)
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "all": 1, "train_sae": 1, "evaluate_sae": 1, "encode_codes": 2, "sae_summary": 1, "sae_sweep_figure": 2,
    }


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
