"""Report tables of a study's searches: trials.csv, candidates.csv, choices.csv and choices.tex
(results/analysis/tuning/, docs/tuning.md), each written atomically (kvstudy.atomic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kvstudy.atomic import write_csv_atomic, write_text_atomic
from kvstudy.tuning.select import as_number, candidate_table, higher_is_better, read_trials
from kvstudy.tuning.space import settings
from kvstudy.tuning.study import choice_path, dev_raw_path, searches, trial_jobs


def _read_choices(root: Path, model: str, s: dict, st: dict, tasks) -> tuple[dict | None, dict]:
    """(the global choice or None, {task: per-task choice}) of one search for one model, as the tune rules wrote
    them."""
    read = lambda mode, task=None: json.loads((root / choice_path(model, s["press"], mode, task)).read_text())  # noqa: E731
    glob = read("global") if "global" in st["mode"] else None
    per_task = {t: read("task", t) for t in tasks} if "task" in st["mode"] else {}
    return glob, per_task


def _choice_row(config, model, s, st, task, table, glob, per_task, results) -> dict:
    """One row of choices.csv: (model, search, task or "mean")."""
    key = "all" if task == "mean" else task
    row = {"model": model, "search": s["press"], "task": task, "objective": st["objective"]}
    look = table[table.task == key].set_index("press")
    if glob:
        g = glob["chosen"]["press"]
        row.update(global_choice=g, global_params=json.dumps(glob["chosen"]["params"]),
                   global_dev=as_number(look.objective.get(g)))
    if per_task and task == "mean":  # the per-task choices' dev objectives, averaged like the global objective
        vals = [as_number(table[(table.task == t) & (table.press == c["chosen"]["press"])].objective.iloc[0])
                for t, c in per_task.items()]
        row.update(task_choice="(per task)", task_params="",
                   task_dev=float(np.mean(vals)) if None not in vals else None)
    elif per_task:
        c = per_task[task]["chosen"]
        row.update(task_choice=c["press"], task_params=json.dumps(c["params"]),
                   task_dev=as_number(look.objective.get(c["press"])))
    if row.get("global_dev") is not None and row.get("task_dev") is not None:
        sign = 1.0 if higher_is_better(config, st["objective"]) else -1.0
        row["dev_gain"] = sign * (row["task_dev"] - row["global_dev"])
    if results is not None:  # test split: the tuned variants' scores (mean over lengths and seeds)
        for mode in st["mode"]:
            r = results[(results.model == model) & (results.press == f"{s['press']}-tuned-{mode}")
                        & (results.status == "ok")]
            if task != "mean":
                r = r[r.task == task]
            # "mean": each task weighted equally, like the global objective
            row[f"{mode}_test_score"] = float(r.groupby("task").score.mean().mean()) if len(r) else None
        if row.get("global_test_score") is not None and row.get("task_test_score") is not None:
            row["test_gain"] = row["task_test_score"] - row["global_test_score"]
    return row


def summary(config: dict, root: Path, results_csv: Path | None):
    """(trials, candidates, choices) tables of every search of the study.

    choices: one row per (model, press, task) and (model, press, "mean"): the per-task and the global choice, their
    dev objective on that task, the dev gain of per-task tuning over global (positive = per-task better), and,
    when results.csv is given, the test-split score of both tuned variants and the test gain (per-task minus
    global score)."""
    import pandas as pd  # lazy: keeps config validation light

    root = Path(root)
    trial_frames, cand_frames, choice_rows = [], [], []
    results = pd.read_csv(results_csv) if results_csv and Path(results_csv).exists() else None
    for s in searches(config):
        st = settings(s["settings"])
        order = [c["press"] for c in s["candidates"]]
        params = {c["press"]: json.dumps(c["params"], sort_keys=True) for c in s["candidates"]}
        for model in config["models"]:
            jobs = [j for j in trial_jobs(config, s) if j.model == model]
            trials = read_trials(root / dev_raw_path(j) for j in jobs)
            trials.insert(1, "search", s["press"])
            trial_frames.append(trials)
            glob, per_task = _read_choices(root, model, s, st, config["tasks"])
            table = candidate_table(trials, order, st["objective"], st["penalty"])
            table.insert(0, "model", model)
            table.insert(1, "search", s["press"])
            table["params"] = table.press.map(params)
            table["chosen_global"] = table.press.eq(glob["chosen"]["press"]) if glob else False
            table["chosen_task"] = [t in per_task and per_task[t]["chosen"]["press"] == p
                                    for p, t in zip(table.press, table.task)]
            table["objective_name"] = st["objective"]
            table["better"] = ["higher" if higher_is_better(config, st["objective"], None if t == "all" else [t])
                               else "lower" for t in table.task]
            cand_frames.append(table)
            choice_rows += [_choice_row(config, model, s, st, task, table, glob, per_task, results)
                            for task in [*config["tasks"], "mean"]]
    cols = ["model", "search", "task", "objective", "global_choice", "global_params", "global_dev", "task_choice",
            "task_params", "task_dev", "dev_gain", "global_test_score", "task_test_score", "test_gain"]
    choices = pd.DataFrame(choice_rows)
    choices = choices[[c for c in cols if c in choices.columns]]
    return (pd.concat(trial_frames, ignore_index=True) if trial_frames else pd.DataFrame(),
            pd.concat(cand_frames, ignore_index=True) if cand_frames else pd.DataFrame(), choices)


def write_summary(config: dict, root: Path, results_csv: Path | None, out_dir: Path) -> list[Path]:
    trials, cands, choices = summary(config, root, results_csv)
    out_dir = Path(out_dir)
    paths = [out_dir / "trials.csv", out_dir / "candidates.csv", out_dir / "choices.csv", out_dir / "choices.tex"]
    write_csv_atomic(trials, paths[0])
    write_csv_atomic(cands, paths[1])
    write_csv_atomic(choices, paths[2])
    tex = choices.drop(columns=[c for c in ("global_params", "task_params") if c in choices.columns])
    write_text_atomic(tex.to_latex(index=False, float_format="%.3f", na_rep="--", escape=True), paths[3])
    return paths
