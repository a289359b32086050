# Validate the config (one line naming the bad key, before any job) and expand the grid with kvstudy.grid.
import json
import os
import sys

from kvstudy import grid
from kvstudy.config import ConfigError, validate

try:
    config.update(validate(config))
except ConfigError as e:
    sys.exit(str(e))

envvars:
    "PATH",


# Rules call `kvstudy` from the environment that runs snakemake, so no activated venv is needed.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
JOBS = {grid.raw_path(j): j for j in grid.jobs(config)}
RAW = sorted(JOBS)
FIGURES = config["figures"]
TABLES = expand(
    "results/tables/{name}.csv",
    name=["results", "samples", "performance", "memory_usage", "throughput"],
)
ANALYSIS = ["results/analysis/pareto.csv", "results/analysis/significance.csv"]


wildcard_constraints:
    model=r"[^/]+",
    task=r"[^/]+",
    press=r"[^/]+",
    length=r"\d+",
    seed=r"\d+",


def eval_job(wildcards):
    """The job of one raw result, as JSON for `kvstudy eval`; a path outside the grid is an error."""
    path = grid.RAW.format(**wildcards)
    if path not in JOBS:
        raise ValueError(f"{path} is not a job of this config (check models/tasks/lengths/presses/seeds)")
    return json.dumps(JOBS[path], sort_keys=True)


def study_json(wildcards):
    """The resolved config, so `kvstudy aggregate` reads exactly this study's raw results."""
    return json.dumps({k: config[k] for k in ("models", "tasks", "lengths", "presses", "seeds", "eval")})
