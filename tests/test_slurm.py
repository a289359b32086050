"""The tiny study through a real SLURM with the repo's profile (.ci/slurm-up.sh starts one; CI sets KVSTUDY_SLURM=1).

Every eval job must go through sbatch (a SLURM job id and log per job); aggregation and plots run locally.
"""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import copy_workflow

pytestmark = pytest.mark.skipif(os.environ.get("KVSTUDY_SLURM") != "1", reason="no SLURM cluster (KVSTUDY_SLURM!=1)")

# The CI override of profiles/slurm: the test cluster's partition, small resources, squeue for status (there is
# no accounting database), a short first status check.
CI_OVERRIDE = [
    "--default-resources", "slurm_partition=debug", "mem_mb=500", "runtime=10", "cpus_per_task=1",
    "--set-resources", "eval:mem_mb=2000", "eval:runtime=10", "eval:cpus_per_task=1", "eval:gpu=1",
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5", "--jobs", "4",
]


# The grouping the profile documents (commented out there): all eval jobs in one submission, one GPU.
GROUPED = ["--group-components", "eval=3", "--resources", "gpu=1",
           "--set-resource-scopes", "gpu=local"]


def run_study(tmp_path, *extra):
    copy_workflow(tmp_path)
    cmd = ["timeout", "-s", "KILL", "600", sys.executable, "-m", "snakemake", "figures/all",
           "--profile", "profiles/slurm", "--configfile", ".test/slurm.yaml", *CI_OVERRIDE, *extra]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-5000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    for _, log in submitted:
        assert os.path.exists(log)
    return submitted


def test_study_runs_through_sbatch(tmp_path):
    assert len(run_study(tmp_path)) == 3  # the three eval jobs, nothing else
    res = pd.read_csv(tmp_path / "results/tables/results.csv")
    assert len(res) == 3 and (res.status == "ok").all()
    assert res.set_index("press").score["no_press"] == 1.0
    assert (tmp_path / "figures/all").exists()


def test_grouped_eval_jobs_share_one_submission(tmp_path):
    submitted = run_study(tmp_path, *GROUPED)
    assert len(submitted) == 1
    assert open(submitted[0][1]).read().count("rule eval") >= 3
    assert len(pd.read_csv(tmp_path / "results/tables/results.csv")) == 3
