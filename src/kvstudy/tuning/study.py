"""A study's searches -> their trials (dev-split eval jobs), the tuned variants' choices and where they live.

Trials are ordinary eval jobs (`split: dev`) on samples the test split never sees: a task's generator at seed
`DEV_SEED_OFFSET + seed`, while test seeds are below the offset (schema). Every (candidate, task, length, seed) is
one trial with its own raw result (DEV_RAW), so a search is cached and resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kvstudy.grid import jobs
from kvstudy.job import Job, thaw
from kvstudy.presses import get_press
from kvstudy.study import Study
from kvstudy.tuning.space import candidates, settings
from kvstudy.tasks.base import DEV_SEED_OFFSET  # noqa: F401  (re-exported; tasks with a dev half read it too)
from kvstudy.variants import base_slug, fixed_combos, slug

DEV_RAW = "results/raw/{model}/{task}/{length}/{press}/dev/seed{seed}.json"
DEV_LOG = "logs/eval/{model}/{task}/{length}/{press}/dev/seed{seed}.log"
CHOICE_GLOBAL = "results/analysis/tuning/{model}/{press}.json"
CHOICE_TASK = "results/analysis/tuning/{model}/{press}/{task}.json"


def dev_seed(seed: int) -> int:
    """The dev-split data seed of a study seed: never equal to any test seed (those are < DEV_SEED_OFFSET)."""
    return DEV_SEED_OFFSET + int(seed)


def searches(config: Study | dict) -> list[dict]:
    """One search per (searched entry, fixed combination): base press slug, method, fixed params, settings and
    candidates (each with its trial slug)."""
    out = []
    for entry in thaw(Study.from_config(config).presses):  # plain entries: the search space expands lists
        if "search" not in entry:
            continue
        s = settings(entry["search"])
        defaults = get_press(entry["method"]).defaults
        for fixed in fixed_combos(entry):
            ratio = fixed.get("compression_ratio")
            params = {k: v for k, v in fixed.items() if k != "compression_ratio"}
            cands = [
                {"press": slug(entry["method"], ratio, {**params, **c}), "params": c}
                for c in candidates(s, fixed, defaults)
            ]
            out.append({"press": base_slug(entry["method"], fixed), "method": entry["method"], "fixed": fixed,
                        "settings": s, "candidates": cands})
    return out


def choice_path(model: str, press: str, mode: str, task: str | None = None) -> str:
    return CHOICE_GLOBAL.format(model=model, press=press) if mode == "global" else CHOICE_TASK.format(
        model=model, press=press, task=task)


def sub_study(study: Study, search: dict) -> Study:
    """The study of one search's trials, derived from the study: its candidates as the presses, the search's
    `lengths` and `n_samples` where it sets them, no `exclude:`. It keeps the study's seeds (a valid study); its
    jobs run on the dev split at `dev_seed(seed)` (trial_jobs)."""
    st = settings(search["settings"])
    tasks = {name: ({**t, "n_samples": st["n_samples"]} if "n_samples" in st else t) for name, t in study.tasks.items()}
    presses = [{"method": search["method"], **search["fixed"], **c["params"]} for c in search["candidates"]]
    rest = {k: v for k, v in study.rest.items() if k != "figures"}  # the study's figures draw its test results
    return dataclasses.replace(study, tasks=tasks, lengths=st.get("lengths", study.lengths), exclude=(),
                               presses=presses, rest=rest)


def trial_jobs(config: Study | dict, search: dict | None = None) -> list[Job]:
    """Every trial (dev-split eval job) of the study, or of one search: the jobs of its sub-study (kvstudy.grid.jobs),
    so a trial has exactly the fields of a test job, plus `split: dev`, `tuning_of`, a dev seed (and `attn_error`
    where the objective needs it)."""
    study = Study.from_config(config)
    out = []
    for s in [search] if search else searches(study):
        attn_error = True if settings(s["settings"])["objective"] == "combined" else None
        out += [dataclasses.replace(job, seed=dev_seed(job.seed), split="dev", tuning_of=s["press"],
                                    attn_error=attn_error) for job in jobs(sub_study(study, s))]
    return out


def dev_raw_path(job: Job) -> str:
    return DEV_RAW.format(**vars(job))


def apply_choice(job: Job, root: Path = Path(".")) -> Job:
    """A tuned test-split job with the parameters its tuning JSON chose (read at run time)."""
    t = job.tuning
    path = Path(root) / choice_path(job.model, t["press"], t["mode"], job.task)
    choice = json.loads(path.read_text())
    if choice["press"] != t["press"] or choice["model"] != job.model:
        raise ValueError(f"{path}: tuning of {choice['model']}/{choice['press']}, not {job.model}/{t['press']}")
    return dataclasses.replace(job, params={**job.params, **choice["chosen"]["params"]},
                               tuning={**t, "file": str(path), "chosen": choice["chosen"]["press"]})


def tune_study(config: dict, model: str, press: str, task: str | None = None) -> dict:
    """The part of the study one choice depends on (the `--study` of `kvstudy tune`): its model, its task (or all
    tasks for the global choice), lengths, seeds, stop words and its press entry. A rule parameter: anything else
    changing in the config (a new press, another model) does not redo the choice, and so does not rerun the tuned
    test jobs that read it."""
    entry = next(e for e in config["presses"] if "search" in e and any(
        base_slug(e["method"], f) == press for f in fixed_combos(e)))
    tasks = config["tasks"] if task is None else {task: config["tasks"][task]}
    lengths = entry["search"].get("lengths", config["lengths"])
    return {"models": {model: config["models"][model]}, "tasks": tasks, "lengths": lengths,
            "seeds": config["seeds"], "eval": {"stop_words": config["eval"]["stop_words"]}, "presses": [entry]}


def find_search(config: dict, press: str) -> dict:
    for s in searches(config):
        if s["press"] == press:
            return s
    raise KeyError(f"no search for press {press!r} in this study")
