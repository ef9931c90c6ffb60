"""The cluster path under a real SLURM: the tiny workflow submitted job by job through sbatch with
the shipped profile, the GPU rules scheduled on (fake) GPUs, a cancelled SAE training resumed from
its checkpoint, and a job killed for memory retried with more.

These need a running SLURM (`bash profiles/local_slurm.sh up`, as root, brings up a one-node one;
CI does). Elsewhere they skip, except under CI=true, where a missing SLURM is a failure."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, slurm_is_up, snakemake, workdir_copy
from test_workflow import check_second_fresh_run, one_pass_config

# slurm: run after the unit tests and before the tiny run's readers (conftest), which it overlaps.
pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# snakemake, its status checks capped at 3 s apart (see that file) for the runs here.
PROMPT = [sys.executable, str(Path(__file__).with_name("snakemake_prompt_status.py"))]
# The cluster here has no accounting database: squeue for job states (its MinJobAge is 3600 s).
# The profile's groups, but for the reports: one group per connected part, so that the summaries
# and figures whose inputs are done run while other jobs do, not all at the end one after another
# (a group runs its members one at a time).
SLURM = ["--cores", "all", "--profile", str(Path(REPO) / "profiles/slurm"),
         "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
         "--group-components", "tables=4", "browser=4", "probes=2", "circuits=4", "reports=1"]
# Rules whose jobs ask for GPUs when their config section sets gpus (gpu_config below).
GPU_RULES = {"cache_activations", "train_sae", "evaluate_sae", "encode_codes", "steer_sae", "probe_fit"}
STEPS = 800  # of the SAE training cancelled in the middle
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if not slurm_is_up():
        message = "no SLURM answers here (bash profiles/local_slurm.sh up brings one up)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


# Config sections with a mem_mb (config/schema.yaml): the tiny run's jobs peak at about 1 GB.
MEMORY_SECTIONS = ["activations", "encode", "sae.training", "sae.evaluation", "evalset", "families", "latents",
                   "concepts", "steering", "networks", "heads", "browser", "probes", "probes.sparse"]


def gpu_config(config: dict) -> dict:
    """``config`` with one GPU for every GPU rule and 2 GB for every job (where jobs run: neither
    changes a number). The defaults' 8-16 GB would let the 23 GB node run one job at a time."""
    for section in (config["activations"], config["sae"]["training"], config["sae"]["evaluation"],
                    config["encode"], config["steering"], config["probes"]):
        section["gpus"] = 1
    for name in MEMORY_SECTIONS:
        section = config
        for key in name.split("."):
            section = section.setdefault(key, {})
        section["mem_mb"] = 2000
    return config


def on_slurm(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """snakemake with the SLURM profile (``args`` + ``SLURM``, whose last option takes a list) in
    ``cwd``; output captured."""
    return snakemake(args + SLURM, cwd=cwd, command=PROMPT)


def job_record(jobid: str) -> dict[str, str]:
    """SLURM's record of a job (scontrol; the cluster keeps finished jobs for an hour)."""
    text = subprocess.run(["scontrol", "-o", "-d", "show", "job", jobid], capture_output=True, text=True,
                          check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def submissions(text: str) -> list[tuple[str, str]]:
    """(SLURM job id, rule or ``group:<name>``) of every job a run submitted, from its log lines."""
    found = []
    for _, jobid, log in SUBMITTED.findall(text):
        folder = log.split("/slurm_logs/")[1].split("/")[0]
        if folder.startswith("group_"):  # group_<name>_<its rules>
            found.append((jobid, "group:" + folder.split("_")[1]))
        else:
            name = folder.removeprefix("rule_")
            found.append((jobid, "encode_codes" if name.startswith("encode_codes") else name))
    return found


def test_the_tiny_workflow_runs_under_slurm_and_gives_the_local_tables(request, tmp_path):
    """A fresh run of the tiny config through sbatch with the shipped profile: every job submitted
    and completed there (none runs on the submitting node but the target rule), each GPU job
    granted a GPU and no other job one, and the result tables byte-identical to the local run's
    (tiny_run). It is test_workflow's second fresh run (the evaluation set encoded from the model
    in one pass per dataset, no intermediates kept, `check_second_fresh_run`), made here instead,
    with one GPU for every GPU rule: neither changes a number."""
    work = workdir_copy(tmp_path)
    config = tmp_path / "one_pass_gpus.yaml"
    # The circuits (feature networks, attention heads) stay out of this run: their jobs are
    # checked in the local runs, and here they cost CI minutes of job start-ups.
    config.write_text(yaml.safe_dump(gpu_config(one_pass_config()) | {"networks": {"sweep": None},
                                                                      "heads": {"sweep": None}}))
    plan = snakemake(["-n", "--configfile", str(config)], cwd=work).stdout
    proc = on_slurm(["--configfile", str(config)], cwd=work)
    text = proc.stdout + proc.stderr

    jobs = submissions(text)
    assert len(jobs) >= 20, text[-3000:]
    # Only the aggregating target rule runs on the submitting node.
    assert set(re.findall(r"^localrule (\w+):", text, re.M)) == {"all"}
    planned = set(re.findall(r"^rule (\w+):", plan, re.M))
    submitted_rules = {rule for _, rule in jobs}
    grouped = {rule for rule in planned if f"rule {rule}:" in text and rule not in submitted_rules}
    assert {"train_sae", "evaluate_sae", "sae_summary", "family_specificity"} <= grouped
    assert {"group:sae", "group:tables", "group:browser", "group:probes", "group:reports"} <= submitted_rules
    for jobid, rule in jobs:
        record = job_record(jobid)
        assert record["JobState"] == "COMPLETED", (rule, record)
        # A group runs one member at a time (profiles/slurm, group_slot), and every member of
        # these groups has one thread: a group that asks for more holds cores it never uses.
        if rule.startswith("group:"):
            assert record["NumCPUs"] == "1", (rule, record)
        asked = record.get("TresPerJob", "")
        granted = record.get("JOB_GRES", "(null)")
        if rule in GPU_RULES | {"cache_intermediate_activations", "group:sae", "group:probes"}:
            assert asked == "gres:gpu:1" and granted == "gpu:1", (rule, record)
        else:
            assert "gpu" not in asked and granted == "(null)", (rule, record)
    # The jobs saw the GPU they were given (CUDA_VISIBLE_DEVICES) and, finding no CUDA behind the
    # fake one, computed on the CPU and said so (device: auto).
    train_log = work / "logs/tiny_esm2/sae/uniref50/layer2/topk_k4_w64.log"
    assert "device auto: cpu, although the job was given GPU(s)" in train_log.read_text()

    # The local run, running in the background meanwhile (conftest), only now.
    tiny_run = request.getfixturevalue("tiny_run")
    check_second_fresh_run(tiny_run, work, lambda: on_slurm(["--configfile", str(config)], cwd=work), config,
                           left_out=("networks", "heads"))


@pytest.fixture(scope="module")
def long_training(tmp_path_factory):
    """A working directory whose SAE training takes long enough to cancel in the middle (800 steps,
    about 10 s here; a checkpoint every 100), with the caches it reads and a local, uninterrupted
    run's weights."""
    tmp = tmp_path_factory.mktemp("long_training")
    work = workdir_copy(tmp)
    config = yaml.safe_load((Path(REPO) / "config/tiny.yaml").read_text())
    config["sae"]["training"] |= {"n_tokens": STEPS * 512, "checkpoint_every": 100}
    path = tmp / "long.yaml"
    path.write_text(yaml.safe_dump(gpu_config(config)))
    sae = Path("results/tiny_esm2/sae/uniref50/layer2/topk_k4_w64")
    snakemake([str(sae / "sae.safetensors"), "--cores", "2", "--configfile", str(path)], cwd=work)
    reference = (work / sae / "sae.safetensors").read_bytes()
    return work, path, sae, reference


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_a_cancelled_training_job_resumes_from_its_checkpoint(long_training):
    """scancel of the running train_sae job: snakemake stops, the checkpoint and nothing
    half-written stays; the rerun resumes from the checkpoint and ends with the weights of the
    uninterrupted local run, byte for byte."""
    work, config, sae, reference = long_training
    shutil.rmtree(work / sae)
    target = [str(sae / "sae.safetensors"), "--retries", "0", "--configfile", str(config)]
    out = work / "cancelled.log"
    with out.open("w") as handle:
        run = subprocess.Popen(PROMPT + target + SLURM, cwd=work, stdout=handle, stderr=subprocess.STDOUT,
                               env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        def training_job():
            return [jobid for jobid, rule in submissions(out.read_text()) if rule == "group:sae"]
        jobid = wait_for(training_job, 120, "the SAE job's submission")[0]
        wait_for(lambda: (work / sae / "checkpoint.pt").exists(), 180, "the first checkpoint")
        subprocess.run(["scancel", jobid], check=True)
        assert run.wait(timeout=180) != 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=60)
    assert job_record(jobid)["JobState"] == "CANCELLED"
    left = sorted(path.name for path in (work / sae).iterdir())
    assert left == ["checkpoint.pt"], left  # no weights, no temporaries
    step = torch.load(work / sae / "checkpoint.pt", weights_only=False)["step"]
    assert 0 < step < STEPS

    proc = on_slurm(target, cwd=work)
    log = (work / "logs/tiny_esm2/sae/uniref50/layer2/topk_k4_w64.log").read_text()
    assert f"at step {step} of {STEPS}" in log and "resuming from" in log, log
    assert (work / sae / "sae.safetensors").read_bytes() == reference
    assert not (work / sae / "checkpoint.pt").exists()
    assert all(job_record(jobid)["JobState"] == "COMPLETED" for jobid, _ in submissions(proc.stdout + proc.stderr))


def test_a_job_killed_for_memory_is_retried_with_more(long_training, tmp_path):
    """A training job given too little memory is killed by SLURM (over its --mem); the profile's
    retry resubmits it with twice the memory (mem_mb x attempt), and it completes."""
    work, config, sae, _ = long_training
    small = yaml.safe_load(config.read_text())
    small["sae"]["training"] |= {"mem_mb": 500, "n_tokens": 20000}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small))
    other = Path("results/tiny_esm2/sae/uniref50/layer2/topk_k2_w64")
    proc = on_slurm([str(other / "sae.safetensors"), "--retries", "2", "--configfile", str(path)], cwd=work)
    jobs = [jobid for jobid, rule in submissions(proc.stdout + proc.stderr) if rule == "group:sae"]
    records = [job_record(jobid) for jobid in jobs]
    assert [record["JobState"] for record in records][-1] == "COMPLETED"
    assert len(records) >= 2 and all(record["JobState"] != "COMPLETED" for record in records[:-1])
    memory = [record["TRES"].split("mem=")[1].split(",")[0] for record in records]
    assert memory[:2] == ["500M", "1000M"], memory
    first_log = Path(records[0]["StdOut"]).read_text()
    assert "exceeded memory limit" in first_log, first_log[-2000:]
    assert (work / other / "sae.safetensors").exists()
