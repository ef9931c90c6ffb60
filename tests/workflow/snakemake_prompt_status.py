"""`python -m snakemake`, with the SLURM plugin's status checks at most ``PROTSAE_STATUS_CAP`` s
apart (default 3) instead of up to 180: the tests' runs under the one-node SLURM only.

The plugin waits 10 s longer after every status check that finds no job finished, up to 180 s,
which suits a busy cluster; on a 2-core CI machine it leaves the node idle for minutes between
jobs. Jobs still go through sbatch and SLURM alone says when they end; only how soon snakemake
asks changes."""

import os
import sys

import snakemake_executor_plugin_slurm as slurm
from snakemake.cli import main

CAP = float(os.environ.get("PROTSAE_STATUS_CAP", "3"))
_check_active_jobs = slurm.Executor.check_active_jobs


async def check_active_jobs(self, active_jobs):
    async for job in _check_active_jobs(self, active_jobs):
        yield job
    self.next_seconds_between_status_checks = min(self.next_seconds_between_status_checks or CAP, CAP)


slurm.Executor.check_active_jobs = check_active_jobs

if __name__ == "__main__":
    sys.argv[0] = "snakemake"
    sys.exit(main())
