"""The whole dry-run DAG of a config as JSON: every job's rule, wildcards, inputs, outputs, logs,
benchmark and params, sorted, so two trees (before and after a refactor) can be compared job for job.

    python benchmarks/dag_snapshot.py config/config.yaml > before.json
    python benchmarks/dag_snapshot.py --compare before.json after.json [--drop-param KEY ...]

The DAG is built with every job forced (``forceall``), so the snapshot does not depend on what is
already on disk. Inputs the user provides (UniRef50, Swiss-Prot...) are created empty in a scratch
copy of the workflow when missing, as the workflow tests do. ``--compare`` prints the differences
and exits 1 when there are any; ``--drop-param`` names param keys (at any depth, e.g.
``model.device``) that are expected to disappear and are removed from the first snapshot first,
``--new-param`` keys that are expected to appear and are removed from the second.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

from protsae.spec import user_inputs

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_PARTS = ["Snakefile", "rules", "config", "workflow", "envs", "resources/demo", "resources/antibody",
                  "resources/throughputs"]


def _plain(value):
    """Params as JSON-able values (Snakemake hands out Namedlists and tuples)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _workdir(config_path: Path, scratch: Path) -> Path:
    work = scratch / "work"
    (work / "resources").mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        (work / part).symlink_to(REPO / part)
    for path in user_inputs(yaml.safe_load(config_path.read_text())):
        if not (work / path).exists():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).touch()
    return work


def snapshot(configfile: str) -> list[dict]:
    """Every job of the forced dry-run DAG of ``configfile`` (relative to the repository)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    with tempfile.TemporaryDirectory() as scratch:
        work = _workdir(REPO / configfile, Path(scratch))
        cwd = os.getcwd()
        try:
            with contextlib.redirect_stderr(io.StringIO()), SnakemakeApi(OutputSettings(quiet=None)) as api:
                workflow_api = api.workflow(
                    resource_settings=ResourceSettings(cores=1),
                    config_settings=ConfigSettings(configfiles=[work / configfile]),
                    snakefile=work / "Snakefile",
                    workdir=work,
                )
                workflow_api.dag(DAGSettings(forceall=True))
                workflow = workflow_api._workflow
                workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
                workflow._build_dag()
                jobs = []
                for job in workflow.dag.jobs:
                    jobs.append({
                        "rule": job.rule.name,
                        "wildcards": dict(sorted(job.wildcards_dict.items())),
                        "input": sorted(map(str, job.input)),
                        "output": sorted(map(str, job.output)),
                        "log": sorted(map(str, job.log)),
                        "benchmark": str(job.benchmark) if job.benchmark else None,
                        "params": _plain(dict(job.params.items())),
                    })
        finally:
            os.chdir(cwd)
    return sorted(jobs, key=lambda job: (job["rule"], job["output"]))


def _drop(params: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    for key, value in list(params.items()):
        if key == head and not rest:
            del params[key]
        elif isinstance(value, dict):
            _drop(value, dotted if key != head else rest)


def compare(before: list[dict], after: list[dict], dropped: list[str], added: list[str] = ()) -> list[str]:
    """Differences between two snapshots, as lines (empty when they agree)."""
    for jobs, keys in ((before, dropped), (after, added)):
        for job in jobs:
            for key in keys:
                _drop(job["params"], key)
    key = lambda job: (job["rule"], tuple(job["output"]))  # noqa: E731
    old, new = {key(job): job for job in before}, {key(job): job for job in after}
    lines = [f"only before: {k}" for k in sorted(old.keys() - new.keys())]
    lines += [f"only after: {k}" for k in sorted(new.keys() - old.keys())]
    for k in sorted(old.keys() & new.keys()):
        for field in ("wildcards", "input", "log", "benchmark", "params"):
            if old[k][field] != new[k][field]:
                lines.append(f"{k} {field}:\n  before {old[k][field]}\n  after  {new[k][field]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configfile", nargs="?")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--drop-param", action="append", default=[])
    parser.add_argument("--new-param", action="append", default=[])
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(path).read_text()) for path in args.compare)
        lines = compare(before, after, args.drop_param, args.new_param)
        print("\n".join(lines) if lines else f"identical: {len(after)} jobs")
        sys.exit(1 if lines else 0)
    json.dump(snapshot(args.configfile), sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
