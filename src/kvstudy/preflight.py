"""Preflight: what a study's jobs need that can be checked before any of them starts, without model weights.

Config validation runs it (`kvstudy validate`; the Snakefile in its main process) after the static checks:
- each model's config and tokenizer load (`kvstudy.models.load_config_tokenizer`): a local path that does not
  exist is an error, a hub id comes from the local hub cache or the hub answers within seconds;
- every press variant x model x task kind is supported (`kvstudy.presses.support.unsupported`), the candidates of
  a press search (its dev-split trials) included;
- every task x model x length builds its samples with that model's tokenizer and chat-template setting, as its
  job will: the first `n_samples` of them up to SAMPLE_TOKENS context tokens (at least one), for the cell's first
  seed. The task's own error names what is wrong (`value_type 'numbers' needs digits...`);
- a task entry is one task on every model: its resolved parameters (`Task.resolved`, e.g. `vocab: auto` ->
  english or lexicon) agree across the models it runs on; else one task name would mean two tasks in one table.
Left-out cells (`exclude:`) are not checked. A task whose local files a `data:` entry fetches (rule fetch_data)
and which are not there yet is not built either; the preflight of the next snakemake call builds it. A task that reads a hub dataset is not built (its tokenizer-side
checks still run): opening one can mean downloading gigabytes, and the hub may be reachable only where jobs run;
its job opens it at start.

Every problem is one line naming the culprit (and how to leave the cell out); all are reported at once
(`ConfigError.lines`). A passed preflight is remembered (`kvstudy.preflight_cache`), so repeated snakemake calls
pay for it once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kvstudy.errors import ConfigError
from kvstudy.job import Job

SAMPLE_TOKENS = 32_768  # context tokens built per (task, model, length) cell: all samples of short cells, 2 at 16k


def check(config: dict) -> dict:
    """Run the preflight of a statically valid, resolved `config` (or find it passed in the cache); returns what it
    did: {"cached", "seconds", "models", "cells", "samples", "press_checks", "hub_tasks"}. Raises ConfigError."""
    from kvstudy import preflight_cache
    from kvstudy.grid import jobs
    from kvstudy.tuning import trial_jobs

    t0 = time.perf_counter()
    key = preflight_cache.key(config)
    cached = preflight_cache.read(key)
    if cached is not None:
        return {**cached, "cached": True, "seconds": time.perf_counter() - t0}
    kept = jobs(config) + trial_jobs(config)  # a searched press's dev-split trials run its candidates
    problems, report = run(config, kept)
    if problems:
        raise ConfigError.several(problems)
    report["seconds"] = time.perf_counter() - t0
    # a hub model downloaded just now (config + tokenizer) is in the local cache from here on: keyed now
    preflight_cache.write(key or preflight_cache.key(config), report)
    return {**report, "cached": False}


def run(config: dict, kept: list[Job]) -> tuple[list[str], dict]:
    """(problems, report) of the study's jobs `kept` (kvstudy.grid.jobs)."""
    from kvstudy.models import load_config_tokenizer, model_ref

    problems: list[str] = []
    loaded = {}  # model name -> (transformers config, tokenizer)
    for name in dict.fromkeys(j.model for j in kept):
        m = config["models"][name]
        try:
            loaded[name] = load_config_tokenizer(model_ref(m), m.get("config_overrides"))[:2]
        except ValueError as e:
            problems.append(f"config error: models.{name}.path: {e}")
    press_problems, n_press = _presses(config, kept, loaded)
    missing = _missing_files(config, kept)  # their tasks are not built: the same error in every cell
    task_problems, report = _tasks(config, [j for j in kept if j.task not in missing], loaded)
    problems += press_problems + [why for why in missing.values() if why] + task_problems
    report["fetch_tasks"] = sorted(t for t, why in missing.items() if why is None)
    return problems, {"models": len(loaded), "press_checks": n_press, **report}




def _missing_files(config: dict, kept: list[Job]) -> dict[str, str | None]:
    """task -> the line saying which local data file it names is not there (no tokenizer needed to say so), or None
    where a `data:` entry of the study fetches it before the task's jobs."""
    from kvstudy.fetch import FILE_PARAMS, files_to_fetch
    from kvstudy.tasks.sources import is_hub

    to_fetch = files_to_fetch(config)
    problems = {}
    for task in dict.fromkeys(j.task for j in kept):
        for key in FILE_PARAMS:
            value = config["tasks"][task].get(key, "")
            hub = key in ("source", "demo_source") and is_hub(value)
            if value and not hub and not Path(value).expanduser().exists():
                if value in to_fetch:
                    problems[task] = None
                    continue
                problems[task] = (f"config error: tasks.{task}.{key}: {value}: no such file (relative paths are read "
                                  f"from {Path.cwd()})")
                break
    return problems


def _presses(config: dict, kept: list[Job], loaded: dict) -> tuple[list[str], int]:
    """Each press variant x model x task kind that some job runs: `support.unsupported` must have no reason."""
    from kvstudy.grid import variants
    from kvstudy.presses import support
    from kvstudy.tasks import TASKS

    entry = {v["press"]: i for i, p in enumerate(config["presses"]) for v in variants({"presses": [p]})}
    kinds: dict[tuple, set] = {}
    first: dict[tuple, dict] = {}
    for j in kept:
        key = (j.model, j.press)
        kinds.setdefault(key, set()).add(TASKS[j.task_kind].kind)
        first.setdefault(key, j)
    problems, n = [], 0
    for (model, press), ks in kinds.items():
        if model not in loaded:
            continue
        j = first[(model, press)]
        for kind in sorted(ks):
            n += 1
            why = support.unsupported(j.method, j.params, loaded[model][0], kind)
            if why:
                on = f" ({kind} tasks)" if len(ks) > 1 else ""
                problems.append(f"config error: presses[{entry.get(press, '?')}]: press {press} on model {model}{on}: "
                                f"{why} (leave it out with exclude: [{{model: {model}, method: {j.method}}}])")
                break
    return problems, n


def _tasks(config: dict, kept: list[Job], loaded: dict) -> tuple[list[str], dict]:
    """Build each (model, task, length) cell's first samples; check each task is one task on all its models."""
    cells: dict[tuple, int] = {}  # (model, task, length) -> the seed of its first job
    for j in kept:
        cells.setdefault((j.model, j.task, j.length), j.seed)
    failed: dict[tuple, list] = {}  # (task, why) -> [(model, length), ...]
    resolved, hub, n_samples = {}, set(), 0
    for (model, task, length), seed in cells.items():
        if model not in loaded:
            continue
        t, tokenizer = _task(config, model, task), loaded[model][1]
        if (task, model) not in resolved:
            resolved[(task, model)] = t.resolved(tokenizer)
        if _hub_sources(t):
            hub.add(task)
            continue
        t.n_samples = max(1, min(t.n_samples, SAMPLE_TOKENS // length))
        try:
            built = t.samples(tokenizer, length, seed)
            if not built:
                raise ValueError("builds no sample")
            n_samples += len(built)
        except Exception as e:  # the task's own reason, whatever it raised, in one line
            failed.setdefault((task, _one_line(e)), []).append((model, length))
    problems = [_cell_problem(task, why, where, kept) for (task, why), where in failed.items()]
    problems += _identity(resolved)
    return problems, {"cells": len(cells), "samples": n_samples, "hub_tasks": sorted(hub)}


def _cell_problem(task: str, why: str, where: list[tuple], kept: list[Job]) -> str:
    """One line for the cells of `task` that fail for one reason, with the `exclude:` entry that leaves them out
    (naming models and lengths only where the reason is not the task's on all of them)."""
    models = list(dict.fromkeys(m for m, _ in where))
    lengths = sorted({n for _, n in where})
    all_models = {j.model for j in kept if j.task == task}
    all_lengths = {j.length for j in kept if j.task == task}
    entry = {"task": task}
    if set(models) != all_models:
        entry["model"] = models if len(models) > 1 else models[0]
    if set(lengths) != all_lengths or len(where) != len(models) * len(lengths):
        entry["length"] = lengths if len(lengths) > 1 else lengths[0]
    said = lambda v: f"[{', '.join(map(str, v))}]" if isinstance(v, list) else str(v)  # noqa: E731
    hint = ", ".join(f"{k}: {said(v)}" for k, v in entry.items())
    on = f"model{'s' if len(models) > 1 else ''} {', '.join(models)} at length{'s' if len(lengths) > 1 else ''} " \
         f"{', '.join(map(str, lengths))}"
    return f"config error: tasks.{task}: on {on}: {why} (leave it out with exclude: [{{{hint}}}])"


def _task(config: dict, model: str, task: str):
    """The task of a cell as its job makes it (kvstudy.evaluate: chat template from the model's setting)."""
    from kvstudy.tasks import get_task
    from kvstudy.tasks.base import configured_chat_template

    params = dict(config["tasks"][task])
    t = get_task(params.pop("kind", task), params)
    t.chat_template = configured_chat_template(type(t), params, config["models"][model].get("chat_template", "auto"))
    return t


def _hub_sources(task) -> list[str]:
    from kvstudy.tasks.sources import is_hub

    return [s for s in (getattr(task, "source", ""), getattr(task, "demo_source", "")) if s and is_hub(s)]


def _identity(resolved: dict) -> list[str]:
    """One line per task entry whose resolved parameters differ between models."""
    by_task: dict[str, dict] = {}
    for (task, model), params in resolved.items():
        by_task.setdefault(task, {})[model] = params
    problems = []
    for task, per_model in by_task.items():
        keys = sorted({k for p in per_model.values() for k in p
                       if len({json.dumps(q.get(k), sort_keys=True) for q in per_model.values()}) > 1})
        if keys:
            k = keys[0]
            values: dict[str, list[str]] = {}
            for model, p in per_model.items():
                values.setdefault(json.dumps(p.get(k)), []).append(model)
            said = "; ".join(f"{k} {v} on {', '.join(ms)}" for v, ms in values.items())
            problems.append(f"config error: tasks.{task}: is a different task on different models ({said}); set "
                            f"{k} in tasks.{task}, or give each model its own task entry and leave the others out "
                            "with exclude")
    return problems


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, ValueError) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def summary(report: dict) -> str:
    """One line of what the preflight did, for `kvstudy validate`."""
    if report.get("cached"):
        return f"preflight: passed before, same inputs (cached; {report['seconds']:.1f} s)"
    hub = report.get("hub_tasks") or []
    left = f"; not built, hub datasets opened at job start: {', '.join(hub)}" if hub else ""
    fetch = report.get("fetch_tasks") or []
    left += f"; not built, their data is fetched before their jobs (data:): {', '.join(fetch)}" if fetch else ""
    return (f"preflight: {report['models']} models (config + tokenizer), {report['press_checks']} press x model "
            f"checks, {report['cells']} task cells, {report['samples']} samples built in {report['seconds']:.1f} s"
            + left)
