"""Raw results are checked when read (kvstudy.rawcheck): every corruption of issue 19 is named in one line, never
enters a table, and (kvstudy.rawguard) is set aside so that it reruns; a dry run moves nothing."""

from __future__ import annotations

import copy
import json
import os
import re
import time

import pytest

from kvstudy.aggregate import InvalidResults, aggregate
from kvstudy.config import validate
from kvstudy.grid import jobs, raw_path
from kvstudy.rawcheck import RawResultError, problem, read
from kvstudy.status import grid_status
from rawfixtures import raw_for, write


@pytest.fixture
def grid(study):
    cfg = validate(study)
    js = jobs(cfg)
    return cfg, js


def _set(path: str, value):
    """A mutation that sets the dotted `path` of a raw result to `value`."""
    def mutate(raw, other):
        *head, last = path.split(".")
        node = raw
        for k in head:
            node = node[int(k)] if k.isdigit() else node[k]
        node[int(last) if last.isdigit() else last] = value
        return raw
    return mutate


def _del(key):
    def mutate(raw, other):
        del raw[key]
        return raw
    return mutate


# (case, mutation of a valid result (and another job's valid result), words the one-line reason holds)
CORRUPT = [
    ("score 7", _set("quality.score", 7), "quality.score 7 is outside [0, 1]"),
    ("score -3", _set("quality.score", -3), "quality.score must be bigger than or equal to 0"),
    ("sample score 7", _set("samples.0.score", 7.0), "samples[0].score 7.0 is outside [0, 1]"),
    ("score NaN", _set("quality.score", float("nan")), "quality.score nan"),
    ("status weird", _set("status", "weird"), "status must be one of"),
    ("empty samples", _set("samples", []), "status ok with no samples"),
    ("n not the samples", _set("quality.n", 5), "quality.n is 5 but there are 2 samples"),
    ("oom with a score", lambda r, o: {**r, "status": "oom"}, "status oom with quality.score"),
    ("task params changed", _set("job.task_params", {"n_samples": 3}), "job.task_params is"),
    ("another job's file", lambda r, o: o, "the config's job for this path has"),
    ("no job", _del("job"), "must contain ['job']"),
    ("samples not a list", _set("samples", {"a": 1}), "samples must be array"),
    ("non-numeric score", _set("quality.score", "high"), "quality.score must be number"),
    ("perplexity metric on a [0, 1] task", lambda r, o: {**r, "quality": {**r["quality"], "metric": "perplexity",
                                                                         "higher_is_better": False, "score": 7},
                                                          "samples": [{**s, "score": 7.0} for s in r["samples"]]},
     "quality.metric is 'perplexity', the job's task scores with 'string_match_all'"),
    ("negative memory", _set("efficiency.peak_memory_bytes", -1), "efficiency.peak_memory_bytes must be bigger"),
    ("task_resolved disagrees", _set("job.task_resolved", {"n_depths": 3, "n_samples": 4}),
     "job.task_resolved.n_depths is 3, the config's task 'niah' has 10"),
]
UNREADABLE = [
    ("truncated", lambda text: text[: len(text) // 2], "not valid JSON"),
    ("empty", lambda text: "", "empty file"),
    ("not UTF-8", lambda text: b"\xff\xfe".decode("latin-1") + text, "not valid JSON"),
    ("a list", lambda text: "[1, 2]", "not a JSON object (a list)"),
]


def test_a_valid_result_of_every_status_passes(grid):
    _, js = grid
    for status in ("ok", "oom", "failed"):
        assert problem(raw_for(js[0], status), js[0]) is None, status


@pytest.mark.parametrize("case, mutate, words", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_each_corruption_is_named_in_one_line(grid, tmp_path, case, mutate, words):
    _, js = grid
    raw = mutate(copy.deepcopy(raw_for(js[0])), raw_for(js[-1]))
    path = write(tmp_path / raw_path(js[0]), json.dumps(raw))
    with pytest.raises(RawResultError) as e:
        read(path, js[0])
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("case, damage, words", UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_unreadable_files_are_named(grid, tmp_path, case, damage, words):
    _, js = grid
    path = write(tmp_path / "r.json", damage(json.dumps(raw_for(js[0]), indent=1)))
    with pytest.raises(RawResultError, match=f"^{path}: .*{words[:10]}"):
        read(path, js[0])


def test_perplexity_scores_at_least_one(study):
    study["tasks"] = {"ppl": {"kind": "perplexity", "source": "corpus.txt"}}
    job = jobs(validate(study))[0]
    raw = raw_for(job, scores=(12.5, 9.0), metric="perplexity")
    raw["quality"]["higher_is_better"] = False
    assert problem(raw, job) is None
    raw["samples"][1]["score"] = 0.5
    assert problem(raw, job) == "samples[1].score 0.5 is below 1 (a perplexity is at least 1)"
    del raw["quality"]["higher_is_better"]
    assert "does not fit metric 'perplexity'" in problem(raw, job)


def test_tuned_variant_params_extend_the_fixed_ones(study):
    study["presses"].append({"method": "snapkv", "compression_ratio": 0.5, "search": {"params": {"window_size": [8, 16]}}})
    job = next(j for j in jobs(validate(study)) if j.press.endswith("-tuned-task"))
    raw = raw_for(job)
    raw["job"]["params"] = {**job.params, "window_size": 16}
    raw["job"]["tuning"] = {**job.tuning, "file": "x.json", "chosen": "snapkv-cr0.50-ws16"}
    assert problem(raw, job) is None
    raw["job"]["tuning"]["mode"] = "global"
    assert problem(raw, job) == "job.tuning.mode is 'global', the config's tuned variant has 'task'"


def test_aggregate_names_every_bad_file_and_writes_no_table(grid, tmp_path):
    _, js = grid
    paths = [write(tmp_path / raw_path(j), raw_for(j)) for j in js[:3]]
    write(paths[1], "{")
    bad = raw_for(js[2])
    bad["quality"]["score"] = 7
    write(paths[2], bad)
    with pytest.raises(InvalidResults) as e:
        aggregate(paths, tmp_path / "tables", {str(p): j for p, j in zip(paths, js)})
    assert len(e.value.lines) == 2
    assert e.value.lines[0].startswith(f"aggregate: invalid raw result {paths[1]}: not valid JSON")
    assert f"{paths[2]}: quality.score 7" in e.value.lines[1]
    assert not (tmp_path / "tables").exists()


def test_aggregate_on_the_command_line_says_one_line_per_file(grid, tmp_path, monkeypatch):
    from kvstudy.cli import main

    cfg, js = grid
    monkeypatch.chdir(tmp_path)
    for j in js:
        write(tmp_path / raw_path(j), raw_for(j))
    write(tmp_path / raw_path(js[3]), raw_for(js[4]))  # another job's result under this job's path
    # the keys the workflow passes (common.smk study_json); no timing jobs here: only raw results are written
    study = json.dumps({**{k: cfg[k] for k in ("models", "tasks", "lengths", "presses", "seeds", "eval", "exclude")},
                        "timing": {**cfg["timing"], "enabled": False}})
    with pytest.raises(SystemExit) as e:
        main(["aggregate", "--study", study, "--out-dir", "tables"])
    assert str(e.value) == (f"aggregate: invalid raw result {raw_path(js[3])}: job.press is \"{js[4].press}\", the "
                            f"config's job for this path has \"{js[3].press}\" (another job's result, or the config "
                            "changed)")
    write(tmp_path / raw_path(js[3]), raw_for(js[3]))
    main(["aggregate", "--study", study, "--out-dir", "tables"])
    assert len((tmp_path / "tables" / "results.csv").read_text().splitlines()) == len(js) + 1


def test_status_calls_a_bad_file_invalid_not_done(grid, tmp_path):
    cfg, js = grid
    write(tmp_path / raw_path(js[0]), raw_for(js[0]))
    write(tmp_path / raw_path(js[1]), "")
    write(tmp_path / raw_path(js[2]), raw_for(js[0]))
    problems = {}
    states = grid_status(cfg, tmp_path, problems)
    assert [states[raw_path(j)] for j in js[:3]] == ["done", "invalid", "invalid"]
    assert problems == {raw_path(js[1]): "empty file", raw_path(js[2]): problems[raw_path(js[2])]}
    assert problems[raw_path(js[2])].startswith("job.")


# --- rawguard: what the Snakefile does before the DAG -------------------------------------------------------


def test_guard_sets_aside_new_bad_results_and_leaves_older_ones(grid, tmp_path, monkeypatch, capsys):
    from kvstudy import rawguard

    _, js = grid
    monkeypatch.chdir(tmp_path)
    by_path = {raw_path(j): j for j in js[:4]}
    for p, j in by_path.items():
        write(tmp_path / p, raw_for(j))
    paths = list(by_path)
    write(tmp_path / paths[0], "")  # bad, older than the tables: aggregate has not read it since; left
    old = time.time() - 100
    os.utime(paths[0], (old, old))
    write(tmp_path / "results/tables/results.csv", "x")
    os.utime("results/tables/results.csv", (old + 10, old + 10))
    write(tmp_path / paths[1], "{")  # bad and new
    assert rawguard.check_results(by_path, act=False) == set()  # a dry run moves nothing
    assert os.path.exists(paths[1])
    assert f"invalid raw result {paths[1]}: not valid JSON" in capsys.readouterr().err
    missing = rawguard.check_results(by_path, act=True)
    assert missing == {paths[1]} and not os.path.exists(paths[1]) and os.path.exists(paths[0])
    rel = os.path.relpath(paths[1], "results/raw")
    assert (tmp_path / "results/rejected" / rel).read_text() == "{"
    assert "not valid JSON" in (tmp_path / "results/rejected" / (rel + ".reason")).read_text()
    os.remove("results/tables/results.csv")  # no tables (a fresh clone with copied results): every one is read
    assert rawguard.check_results(by_path, act=True) == {paths[0], paths[1]}


def test_guard_runs_only_when_snakemake_runs_jobs():
    from kvstudy.rawguard import runs_jobs

    assert runs_jobs(["snakemake", "figures/all", "--cores", "2"])
    for flags in (["-n"], ["-np"], ["--dry-run"], ["--unlock"], ["--touch"], ["--summary"], ["--report", "r.html"],
                  ["--dag"], ["--lint"]):
        assert not runs_jobs(["snakemake", "figures/all", *flags]), flags
    assert runs_jobs(["snakemake", "--report", "r.html", "--report-after-run"])


def test_temp_files_of_killed_writes_are_removed(tmp_path, monkeypatch):
    from kvstudy.rawguard import clean_temp

    monkeypatch.chdir(tmp_path)
    old = write(tmp_path / "results/raw/m/t/256/p/.seed0.json.abc123.tmp", "")
    os.utime(old, (time.time() - 3600,) * 2)
    fresh = write(tmp_path / "results/tables/.results.csv.xyz.tmp", "")  # a write under way: kept
    kept = write(tmp_path / "results/raw/m/t/256/p/seed0.json", "{}")
    assert clean_temp() == [os.path.join("results", "raw", "m", "t", "256", "p", ".seed0.json.abc123.tmp")]
    assert not old.exists() and fresh.exists() and kept.exists()


def test_markers_take_a_new_version_when_results_are_missing(tmp_path, monkeypatch):
    from kvstudy.rawguard import Markers

    monkeypatch.chdir(tmp_path)
    assert Markers().path("results/raw/.missing", []) == "results/raw/.missing.1"  # none yet
    write(tmp_path / "results/raw/.missing.1", "")
    write(tmp_path / "results/raw/.missing.2", "")
    assert Markers().path("results/raw/.missing", []) == "results/raw/.missing.2"
    assert Markers().path("results/raw/.missing", ["a"]) == "results/raw/.missing.3"
    assert Markers(prune=True).path("results/raw/.missing", []) == "results/raw/.missing.2"
    assert sorted(os.listdir("results/raw")) == [".missing.2"]


# --- the whole workflow on a two-job study ------------------------------------------------------------------

MINI = {"study": "mini", "models": {"tiny": {"path": "builtin:tiny-retrieval", "dtype": "float32"}},
        "tasks": {"niah": {"n_samples": 4, "n_depths": 2}}, "lengths": [256],
        "presses": [{"method": "no_press"}, {"method": "knorm", "compression_ratio": [0.25, 0.5]}],
        "figures": ["score_vs_ratio"]}


def _snakemake(wd, *args, umask=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "mini.yaml"],
                          cwd=wd, capture_output=True, text=True, timeout=900,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def _tree(wd):
    """path -> (mtime, size) of every file under results/ and figures/."""
    return {str(p.relative_to(wd)): (p.stat().st_mtime_ns, p.stat().st_size)
            for d in ("results", "figures") for p in (wd / d).rglob("*") if p.is_file()}


@pytest.mark.e2e
def test_a_bad_result_is_named_and_rerun_and_a_dry_run_writes_nothing(tmp_path):
    import pandas as pd
    import yaml

    from conftest import copy_workflow

    wd = copy_workflow(tmp_path)
    (wd / "mini.yaml").write_text(yaml.safe_dump(MINI))
    first = _snakemake(wd, "figures/all", umask=0o002)
    assert first.returncode == 0, first.stderr[-3000:]
    # a bad result, and another job's result, both of the knorm entry's group job (eval.group entry)
    a, b, other = (f"results/raw/tiny/niah/256/{p}/seed0.json" for p in ("knorm-cr0.50", "knorm-cr0.25", "no_press"))
    # results readable by the group (umask 002), whatever mkstemp makes
    assert oct((wd / a).stat().st_mode & 0o777) == oct(0o664)
    assert oct((wd / "results/tables/results.csv").stat().st_mode & 0o777) == oct(0o664)
    before = pd.read_csv(wd / "results/tables/results.csv")

    (wd / b).write_text((wd / other).read_text())  # another job's result under this job's path
    raw = json.loads((wd / a).read_text())
    raw["quality"]["score"] = 7
    (wd / a).write_text(json.dumps(raw))
    orphan = write(wd / "results/raw/tiny/niah/256/knorm-cr0.50/.seed0.json.k1ll3d.tmp", "")
    os.utime(orphan, (time.time() - 3600,) * 2)
    tree = _tree(wd)

    dry = _snakemake(wd, "-n", "figures/all")  # names both, moves and writes nothing
    assert dry.returncode == 0
    assert f"kvstudy: invalid raw result {a}: quality.score 7 is outside [0, 1]" in dry.stderr
    assert f"kvstudy: invalid raw result {b}: job.press is \"no_press\"" in dry.stderr
    assert _tree(wd) == tree

    write(wd / ".snakemake/locks/0.output.lock", f"{a}\n{b}\n")  # another snakemake writes them: nothing moved
    locked = _snakemake(wd, "figures/all")
    assert locked.returncode != 0 and "cannot be locked" in locked.stderr + locked.stdout
    assert _tree(wd) == tree
    os.remove(wd / ".snakemake/locks/0.output.lock")

    run = _snakemake(wd, "figures/all")
    assert run.returncode == 0, run.stderr[-3000:]
    for path in (a, b):
        assert f"kvstudy: invalid raw result {path}" in run.stderr and "set aside as results/rejected/" in run.stderr
        assert (wd / "results/rejected" / os.path.relpath(path, "results/raw")).exists()
        assert read(wd / path)["status"] == "ok"
    # their group job ran again, once, and no other (no_press's result is as it was)
    assert re.findall(r"rule (eval\w*):", run.stderr) == ["eval_knorm"] and not orphan.exists()
    assert _tree(wd)[other] == tree[other]
    after = pd.read_csv(wd / "results/tables/results.csv")
    assert after[["press", "score", "n", "kv_tokens_kept"]].equals(before[["press", "score", "n", "kv_tokens_kept"]])
    assert "Nothing to be done" in _snakemake(wd, "figures/all").stderr
