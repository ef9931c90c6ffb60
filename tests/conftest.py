import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_FASTA = os.path.join(REPO, "resources", "demo", "uniprot_sample.fasta.gz")


SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_PARTS = ["Snakefile", "rules", "config", "workflow", "envs", "resources/demo", "resources/antibody",
                  "resources/throughputs"]


def workdir_copy(tmp_path: Path) -> Path:
    """A working directory that sees the workflow through symlinks and keeps results apart
    (resources/ is a real folder, so inputs a test adds there stay out of the repository)."""
    work = tmp_path / "work"
    (work / "resources").mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        (work / part).symlink_to(Path(REPO) / part)
    return work


def snakemake(args, cwd, check=True, umask=None, command=SNAKEMAKE):
    """``command`` (snakemake) + ``args`` in ``cwd``, output captured; a failure raises with it."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, env=env,
                          umask=-1 if umask is None else umask)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


TINY = ["--configfile", "config/tiny.yaml"]


def result_tables(work: Path) -> dict[Path, bytes]:
    """Every result table (TSV, CSV) of a run, by path."""
    return {path.relative_to(work): path.read_bytes() for path in sorted((work / "results").rglob("*"))
            if path.suffix in (".tsv", ".csv")}


def slurm_is_up() -> bool:
    """Whether a SLURM answers here with a node that takes jobs (profiles/local_slurm.sh up)."""
    if not shutil.which("sinfo"):
        return False
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and any(state in proc.stdout for state in ("idle", "mix", "alloc"))


class BackgroundRun:
    """A snakemake run (``args``, under umask 022) in ``work``, started in the background."""

    def __init__(self, args: list[str], work: Path):
        self.args, self.work = args, work
        self.log = work.parent / "snakemake.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(SNAKEMAKE + args, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                         env=os.environ | {"PYTHONUNBUFFERED": "1"}, umask=0o022)

    def result(self) -> Path:
        """``work`` once the run has finished; a failed run raises with the end of its log."""
        if self.proc.wait() != 0:
            tail = self.log.read_text()[-6000:]
            raise AssertionError(f"snakemake {' '.join(self.args)} failed (exit {self.proc.returncode}), "
                                 f"{self.log}:\n{tail}")
        return self.work

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


BACKGROUND: dict[str, BackgroundRun] = {}


def reads_tiny_run(item) -> bool:
    """Whether a test reads the tiny run: as a fixture, or at its end (marker slurm: the SLURM run
    compares its tables with it)."""
    return "tiny_run" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slurm") is not None


def pytest_collection_modifyitems(config, items):
    """The tests that do not read the tiny run first, then the SLURM tests, then the tiny run's
    readers, each part in its own order (the fault tests at the end of tests/workflow, which alter
    the tiny run, stay last). The tiny run then runs in the background beside the unit tests and
    the SLURM run, which reads it only at its end."""
    def part(item):
        if item.get_closest_marker("slurm") is not None:
            return 1
        return 2 if reads_tiny_run(item) else 0
    items.sort(key=part)  # stable


def start_tiny_run(tmp_path_factory) -> BackgroundRun:
    work = workdir_copy(tmp_path_factory.mktemp("tiny"))
    return BackgroundRun(["--cores", "2", *TINY], work)


def pytest_collection_finish(session):
    """Start the tiny run as soon as collection shows that a selected test reads it, so that it
    runs beside the tests before its readers (the unit tests use one thread each, this file's
    torch.set_num_threads): CI's second core was idle for those."""
    if os.environ.get("PROTSAE_TINY_RUN") or session.config.option.collectonly:
        return
    if any(reads_tiny_run(item) for item in session.items):
        BACKGROUND["tiny"] = start_tiny_run(session.config._tmp_path_factory)


def pytest_sessionfinish(session):
    for run in BACKGROUND.values():
        run.stop()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of the tiny config, under umask 022, shared by the workflow and browser tests.
    It starts when collection ends (`pytest_collection_finish`), or here if it has not; its log is
    snakemake.log beside it.

    PROTSAE_TINY_RUN names a finished run to reuse instead (a working directory made like
    `workdir_copy`), for quick iterations on the tests that only read it."""
    reuse = os.environ.get("PROTSAE_TINY_RUN")
    if reuse:
        return Path(reuse)
    if "tiny" not in BACKGROUND:
        BACKGROUND["tiny"] = start_tiny_run(tmp_path_factory)
    return BACKGROUND["tiny"].result()


@pytest.fixture(scope="session")
def tiny_model():
    from protsae.models import tiny_esm2

    return tiny_esm2()


def write_shard(
    path: Path, seq_ids: list[str], lengths: list[int], acts: np.ndarray, row_group_size: int = 64
) -> None:
    """One shard in the caching stage's format: seq_id, pos, act fixed_size_list[d_model]."""
    d_model = acts.shape[1]
    flat = acts.reshape(-1)
    # pa.array converts float16 element by element; relabelling the integer view does not.
    values = pa.array(flat.view(np.uint16)).view(pa.float16()) if flat.dtype == np.float16 else pa.array(flat)
    table = pa.table(
        {
            "seq_id": pa.array([s for s, n in zip(seq_ids, lengths) for _ in range(n)], pa.string()),
            "pos": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])),
            "act": pa.FixedSizeListArray.from_arrays(values, d_model),
        }
    ).replace_schema_metadata({b"d_model": json.dumps(d_model).encode()})
    pq.write_table(table, path, row_group_size=row_group_size, use_dictionary=["seq_id"], compression="none")


def flip_byte(path: Path, keep_mtime: bool) -> None:
    """Flip one bit in the middle of a file, as bit rot would (keeping its mtime) or an edit."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
