"""Selection: a search's finished trials -> per-candidate table -> the chosen candidate of (model, press[, task]).

A candidate with an out-of-memory trial is infeasible; ties go to the candidate listed first, so the choice is
deterministic. pandas is imported where a table is built: validating a config imports this package.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kvstudy.tasks import TASKS
from kvstudy.tuning.space import settings
from kvstudy.tuning.study import dev_raw_path, find_search, trial_jobs

if TYPE_CHECKING:
    import pandas as pd


def read_trials(paths) -> "pd.DataFrame":
    """One row per trial result: press (candidate), task, length, seed, status, score, attn_error."""
    import pandas as pd  # lazy: keeps config validation light

    rows = []
    for p in paths:
        raw = json.loads(Path(p).read_text())
        job, fid = raw["job"], raw.get("fidelity") or {}
        rows.append({"model": job["model"], "press": job["press"], "task": job["task"], "length": job["length"],
                     "seed": job["seed"], "status": raw["status"], "score": raw["quality"]["score"],
                     "attn_error": fid.get("attn_output_error"), "params": json.dumps(job["params"], sort_keys=True)})
    return pd.DataFrame(rows, columns=["model", "press", "task", "length", "seed", "status", "score", "attn_error",
                                       "params"])


def objective_of(score: float, attn_error: float | None, objective: str, penalty: float) -> float:
    """Higher is better for `score`; `combined` (attention-output error + penalty x (1 - score)) is minimised."""
    if objective == "score":
        return score
    if attn_error is None or (isinstance(attn_error, float) and math.isnan(attn_error)):
        raise ValueError("objective 'combined' needs the attention-output error of every trial (attn_error)")
    return attn_error + penalty * (1.0 - score)


def candidate_table(trials, candidate_order: list[str], objective: str, penalty: float):
    """Per candidate and task (and `task = "all"`: the mean over tasks, each task weighted equally): mean score,
    mean attention-output error, objective, number of trials, and whether any trial ran out of memory.

    A task's value is the mean over its lengths and seeds. A candidate with an OOM trial is infeasible
    (objective NaN): it can never be chosen."""
    import pandas as pd  # lazy: keeps config validation light

    rows = []
    for press in candidate_order:
        t = trials[trials.press == press]
        per_task = []
        for task, g in t.groupby("task", sort=True):
            oom = bool((g.status != "ok").any())
            score = float(g.score.astype(float).mean()) if not oom else math.nan
            err = g.attn_error.astype(float).mean() if g.attn_error.notna().any() and not oom else None
            obj = math.nan if oom else objective_of(score, err, objective, penalty)
            per_task.append({"press": press, "task": task, "score": score, "attn_error": err, "objective": obj,
                             "n_trials": len(g), "oom": oom})
        rows += per_task
        if per_task:
            df = pd.DataFrame(per_task)
            oom = bool(df.oom.any())
            rows.append({"press": press, "task": "all", "score": math.nan if oom else df.score.mean(),
                         "attn_error": None if oom or df.attn_error.isna().all() else df.attn_error.mean(),
                         "objective": math.nan if oom else df.objective.mean(), "n_trials": int(df.n_trials.sum()),
                         "oom": oom})
    return pd.DataFrame(rows, columns=["press", "task", "score", "attn_error", "objective", "n_trials", "oom"])


def higher_is_better(config: dict, objective: str, tasks=None) -> bool:
    """Direction of the objective: `combined` is minimised; `score` follows the tasks (perplexity: lower)."""
    if objective == "combined":
        return False
    kinds = [config["tasks"][t].get("kind", t) for t in (tasks or config["tasks"])]
    return all(getattr(TASKS[k], "higher_is_better", True) for k in kinds)


def select(table, candidate_order: list[str], task: str, higher: bool) -> str:
    """The best candidate for `task` ("all" = global): max (or, `higher` false, min) objective; ties go to the
    candidate listed first (grid / draw order), so the choice is deterministic."""
    t = table[(table.task == task) & table.objective.notna()]
    if t.empty:
        raise ValueError(f"no feasible candidate for task {task!r} (every candidate ran out of memory or has no "
                         f"trial)")
    order = {p: i for i, p in enumerate(candidate_order)}
    best = t.objective.max() if higher else t.objective.min()
    winners = t[np.isclose(t.objective, best, rtol=0, atol=1e-12)]
    return min(winners.press, key=order.__getitem__)


def tune(config: dict, model: str, press: str, task: str | None, root: Path = Path(".")) -> dict:
    """The tuning choice of (model, press[, task]) from its finished trials (global when task is None)."""
    s = find_search(config, press)
    st = settings(s["settings"])
    jobs = [j for j in trial_jobs(config, s) if j.model == model and (task is None or j.task == task)]
    trials = read_trials(Path(root) / dev_raw_path(j) for j in jobs)
    order = [c["press"] for c in s["candidates"]]
    table = candidate_table(trials, order, st["objective"], st["penalty"])
    key = "all" if task is None else task
    higher = higher_is_better(config, st["objective"], None if task is None else [task])
    chosen = select(table, order, key, higher)
    params = {c["press"]: c["params"] for c in s["candidates"]}
    mine = table[table.task == key].set_index("press")

    def record(p):
        r = mine.loc[p]
        return {"press": p, "params": params[p], "objective": as_number(r.objective), "score": as_number(r.score),
                "attn_error": as_number(r.attn_error), "n_trials": int(r.n_trials), "oom": bool(r.oom)}

    return {
        "model": model, "press": press, "method": s["method"], "fixed": s["fixed"],
        "mode": "global" if task is None else "task", "task": task,
        "objective": st["objective"], "penalty": st["penalty"] if st["objective"] == "combined" else None,
        "better": "higher" if higher else "lower",
        "split": "dev", "dev_seeds": sorted({j.seed for j in jobs}), "lengths": sorted({j.length for j in jobs}),
        "tasks": sorted({j.task for j in jobs}), "n_trials": len(jobs),
        "chosen": record(chosen),
        "candidates": [record(p) for p in order if p in mine.index],
    }


def as_number(x) -> float | None:
    """x as a float; None for a missing or NaN value (JSON has no NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)
