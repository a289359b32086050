"""The tuning DAG on the tiny model (.test/tuning.yaml): an interrupted search resumes with only the missing trials,
the tuned test-split jobs use the chosen parameters, a rerun reuses everything, a deleted trial reruns alone (with
the choices that used it and the tuned jobs that read them). About 2 minutes on two cores (10 eval jobs)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_workflow

pytestmark = pytest.mark.e2e
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIG = [".test/tuning.yaml"]


def snakemake(workdir: Path, *args):
    p = subprocess.run([*SNAKEMAKE, *args, "--cores", "2", "--configfile", *CONFIG], cwd=workdir,
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p.stdout + p.stderr


def planned(workdir: Path) -> dict[str, int]:
    out = snakemake(workdir, "-n", "figures/all")
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out, re.M)}


def trials(workdir: Path) -> list[Path]:
    return sorted((workdir / "results/raw").glob("*/*/*/*/dev/seed*.json"))


def started_unfinished(wd: Path) -> list[Path]:
    """Trials whose job has started (its log exists) but whose result is not written yet."""
    logs = (wd / "logs/eval").glob("*/*/*/*/dev/seed*.log")
    return [log for log in logs if not (wd / "results/raw" / log.relative_to(wd / "logs/eval")).with_suffix(".json")
            .exists()]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A copy of the workflow whose first run was killed (snakemake and its jobs, SIGKILL: a lost node or a
    cancelled allocation) while a trial was running, after at least one trial had finished."""
    wd = copy_workflow(tmp_path_factory.mktemp("tuning"))
    p = subprocess.Popen([*SNAKEMAKE, "figures/all", "--cores", "1", "--configfile", *CONFIG], cwd=wd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    # One job at a time: a trial's log appears when its job starts, after Snakemake recorded the previous one.
    while not (trials(wd) and started_unfinished(wd)) and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the process group this test started: snakemake and its running job
    p.wait(timeout=60)
    snakemake(wd, "--unlock")  # what a user does after a crash: the killed run left its lock
    return wd


def test_interrupted_search_resumes_with_only_the_missing_trials(interrupted):
    wd = interrupted
    done = {t: t.stat().st_mtime_ns for t in trials(wd)}
    assert 1 <= len(done) < 4, sorted(done)
    assert planned(wd)["eval_trial"] == 4 - len(done)
    snakemake(wd, "figures/all")
    assert len(trials(wd)) == 4
    assert all(t.stat().st_mtime_ns == m for t, m in done.items())  # finished trials were reused, not rerun


def test_tuned_jobs_use_the_choice(interrupted):
    wd = interrupted
    tdir = wd / "results/analysis/tuning/tiny"
    glob = json.loads((tdir / "snapkv-cr0.90.json").read_text())
    assert glob["mode"] == "global" and glob["n_trials"] == 4 and len(glob["candidates"]) == 2
    assert glob["dev_seeds"] == [1000000]
    best = max(c["objective"] for c in glob["candidates"])
    assert glob["chosen"]["objective"] == best
    for task in ("niah", "kv_retrieval"):
        per_task = json.loads((tdir / "snapkv-cr0.90" / f"{task}.json").read_text())
        assert per_task["chosen"]["objective"] == max(c["objective"] for c in per_task["candidates"])
        for mode, choice in (("global", glob), ("task", per_task)):
            raw = json.loads((wd / f"results/raw/tiny/{task}/256/snapkv-cr0.90-tuned-{mode}/seed0.json").read_text())
            assert raw["job"]["params"] == choice["chosen"]["params"]
            assert raw["job"]["tuning"]["chosen"] == choice["chosen"]["press"]
            assert raw["job"]["seed"] == 0 and raw["status"] == "ok"
    for t in trials(wd):
        raw = json.loads(t.read_text())
        assert raw["job"]["split"] == "dev" and raw["job"]["seed"] == 1000000
    res = pd.read_csv(wd / "results/tables/results.csv")
    assert set(res.press) == {"no_press", "snapkv-cr0.90-tuned-global", "snapkv-cr0.90-tuned-task"}
    choices = pd.read_csv(wd / "results/analysis/tuning/choices.csv")
    assert list(choices.task) == ["niah", "kv_retrieval", "mean"]
    assert choices.task_test_score.notna().all() and choices.global_test_score.notna().all()
    manifest = (wd / "figures/all").read_text()
    assert "figures/tuning_sweep.pdf" in manifest and "results/analysis/tuning/choices.tex" in manifest


def test_report_has_the_tuning_figure_and_tables(interrupted):
    snakemake(interrupted, "--report", "report.html")
    html = (interrupted / "report.html").read_text(errors="ignore")
    assert "tuning_sweep" in html and "choices: per task vs global" in html


def test_rerun_reuses_everything(interrupted):
    assert "Nothing to be done" in snakemake(interrupted, "figures/all")


# Dry runs of another study rewrite the raw-result marker (common.smk): these come after the rerun check.
def test_an_added_press_keeps_the_search(interrupted):
    cfg = (interrupted / ".test/tuning.yaml").read_text()
    more = interrupted / ".test/more.yaml"
    more.write_text(cfg.replace("  - method: no_press\n", "  - method: no_press\n  - {method: knorm, compression_ratio: 0.5}\n"))
    p = subprocess.run([*SNAKEMAKE, "-n", "figures/all", "--cores", "1", "--configfile", str(more)], cwd=interrupted,
                       capture_output=True, text=True)
    plan = dict(re.findall(r"^(\w+)\s+(\d+)$", p.stdout + p.stderr, re.M))
    assert plan.get("eval_knorm") == "2", plan  # knorm x 2 tasks; no trial, no choice, no tuned job again
    assert not {"eval_trial", "tune_global", "tune_task", "eval_tuned"} & set(plan), plan


def test_a_deleted_trial_reruns_alone(interrupted):
    wd = interrupted
    victim = wd / "results/raw/tiny/niah/256" / trials(wd)[0].parent.parent.name / "dev/seed1000000.json"
    victim.unlink()
    plan = planned(wd)
    assert plan["eval_trial"] == 1 and "eval" not in plan
    assert plan["tune_task"] == 1 and plan["tune_global"] == 1  # niah's choice and the global one, not kv's
    # the tuned test jobs that read a remade choice: niah's per-task one and both tasks' global one
    assert plan["eval_tuned"] == 3


def test_local_profile_gives_trials_a_gpu_where_they_run_on_one(interrupted):
    """Trials are eval jobs: on a CPU-only machine (eval.device auto) they take no GPU and run on every core; with
    eval.device cuda each takes one of profiles/local's GPUs (kvstudy.resources)."""
    from kvstudy.resources import has_gpu

    (interrupted / ".test/cuda.yaml").write_text("eval: {device: cuda}\n")
    for extra, gpu in (([], has_gpu()), ([".test/cuda.yaml"], True)):
        p = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "figures/all", "--profile", "profiles/local",
                            "--configfile", *CONFIG, *extra], cwd=interrupted, capture_output=True, text=True)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-3000:]
        blocks = [b for b in out.split("\n\n") if re.search(r"rule eval_(trial|tuned):", b)]
        assert blocks and all(("gpu=1" in b) == gpu for b in blocks), extra