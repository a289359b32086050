from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = "builtin:tiny-retrieval"


def copy_workflow(dst: Path) -> Path:
    """The workflow (Snakefile, configs, rules, envs, test studies, profiles) in `dst`, to run it without touching
    the checkout."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, dst / name)
    for name in ("workflow", "envs", ".test", "profiles"):
        shutil.copytree(ROOT / name, dst / name)
    return dst


@pytest.fixture(scope="session")
def tiny():
    """The shipped tiny model and its tokenizer, loaded once."""
    from kvstudy.models import load_model

    torch.set_num_threads(1)
    return load_model(TINY, "float32", "sdpa", "cpu")


@pytest.fixture
def study() -> dict:
    """A small valid study config (a fresh copy per test)."""
    return {
        "models": {"tiny": {"path": TINY}},
        "tasks": {"niah": {"n_samples": 4}, "kv": {"kind": "kv_retrieval", "n_pairs": 8}},
        "lengths": [256, 512],
        "presses": [
            {"method": "no_press"},
            {"method": "snapkv", "compression_ratio": [0.5, 0.9], "window_size": [16, 32]},
            {"method": "knorm", "compression_ratio": 0.5},
        ],
    }


def dry_run_jobs(out: str) -> list[dict[str, str]]:
    """The jobs a dry run describes, each as {"rule": name, field: value} (output, log, wildcards...): top-level
    jobs and those nested in a job group (every eval rule is in the job group "eval", which a dry run shows as a
    "Group job eval" block with the job indented under it)."""
    jobs = []
    for m in re.finditer(r"^( *)(?:local)?rule (\w+):\n((?:\1    \w[\w ]*: .*(?:\n|$))*)", out, re.M):
        fields = dict(line.strip().split(": ", 1) for line in m.group(3).splitlines())
        jobs.append({"rule": m.group(2), **fields})
    return jobs
