"""The paper-scale studies under studies/: each validates, its grid has the job count its header states, and
`snakemake -n --configfile studies/X.yaml figures/all` schedules exactly those eval jobs (no GPU, no hub). The
dry run's validation preflight reads each model's config and tokenizer and the study's data files: local
stand-ins here (tests/standins.py: a fake hub cache, offline, and tests/data at the paths the study names)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_workflow, dry_run_jobs
from standins import fake_hub, hub_models, place_data

STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


def header_count(path: Path) -> int:
    """The eval-job count the study's header comment states ("Eval jobs: ... = 3,360")."""
    m = re.search(r"^# Eval jobs:.*?= ([\d,]+)", path.read_text(), re.M | re.S)
    assert m, f"{path.name}: header states no eval-job count"
    return int(m.group(1).replace(",", ""))


def test_the_five_seed_studies_are_there():
    assert {p.stem for p in STUDIES} >= {
        "helmet_reasoning", "ppl_kvpress", "tuning_ruler", "generation_h2o_cab", "long_context_scaling"
    }


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_validates_with_the_stated_job_count(path):
    from kvstudy.config import validate
    from kvstudy.grid import jobs

    config = validate(yaml.safe_load(path.read_text()))
    assert len(jobs(config)) + n_trials(config) == header_count(path)


def n_trials(config) -> int:
    """Dev-split trials of press searches (tuning), if the study has any."""
    try:
        from kvstudy.tuning import trial_jobs
    except ImportError:
        return 0
    return len(trial_jobs(config))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A fake hub cache with stand-ins of every hub model the studies name."""
    return fake_hub(tmp_path_factory.mktemp("hub"), [r for p in STUDIES for r in hub_models(yaml.safe_load(p.read_text()))])


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_dry_runs_with_the_stated_job_count(path, tmp_path, hub):
    wd = copy_workflow(tmp_path)
    (wd / "studies").mkdir()
    (wd / "studies" / path.name).write_text(path.read_text())
    place_data(yaml.safe_load(path.read_text()), wd)
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "figures/all", "--cores", "1", "--configfile", f"studies/{path.name}"],
        cwd=wd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", p.stdout, re.M))
    # eval results of every kind: grouped variants (one eval job per press entry and cell, eval.group entry), tuning
    # trials (dev split) and tuned variants (workflow/rules/tuning.smk): the raw results eval rules write
    n_eval = sum(len(j["output"].split(", ")) for j in dry_run_jobs(p.stdout) if j["rule"].startswith("eval"))
    assert n_eval == header_count(path), p.stdout[-2000:]
    assert int(counts["manifest"]) == 1


def test_helmet_reasoning_fetches_models_and_data_before_every_eval_job(tmp_path, hub):
    """The DAG of studies/helmet_reasoning.yaml (snakemake --dag): one fetch job per hub model (five models and
    the cite judge), hub dataset and data entry, and every eval job waits for the fetch jobs of what it reads."""
    path = ROOT / "studies" / "helmet_reasoning.yaml"
    study = yaml.safe_load(path.read_text())
    wd = copy_workflow(tmp_path)
    (wd / "studies").mkdir()
    (wd / "studies" / path.name).write_text(path.read_text())
    place_data(study, wd)
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dag", "dot", "figures/all", "--cores", "1", "--configfile",
         f"studies/{path.name}"],
        cwd=wd, capture_output=True, text=True, timeout=900,
        env={**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]*)"', p.stdout, re.M))
    rule = {n: label.split("\\n")[0] for n, label in labels.items()}
    fields = {n: dict(f.split(": ", 1) for f in label.split("\\n")[1:]) for n, label in labels.items()}
    parents: dict[str, list[str]] = {}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", p.stdout, re.M):
        parents.setdefault(b, []).append(rule[a])
    counts = {r: list(rule.values()).count(r) for r in ("fetch_model", "fetch_dataset", "fetch_data")}
    assert counts == {"fetch_model": 6, "fetch_dataset": 2, "fetch_data": 4}
    evals = [n for n, r in rule.items() if r.startswith("eval")]  # a job per press entry and cell (eval.group entry)
    assert evals and {fields[n]["task"] for n in evals} == set(study["tasks"])
    # Snakemake's DOT draws one edge per rule a job depends on (a cite job's two fetch_model parents, its model
    # and the judge, are one edge): the rules each eval job waits for
    for n in evals:
        task = study["tasks"][fields[n]["task"]]
        want = {"fetch_model"} | ({"fetch_dataset"} if task["kind"] == "helmet_icl" else set())
        files = (task.get("source", ""), task.get("essay_source", ""))
        want |= {"fetch_data"} if any(str(f).startswith("data/") for f in files) else set()
        assert set(parents.get(n, [])) == want, (fields[n], parents.get(n))
