"""A study's `figures:` section -> the figures to build, each with its output name and options.

An entry is either a registered figure name (the form every study used so far: `figures: [score_vs_ratio]`) or a
mapping `{figure: NAME, name: OUTPUT_NAME, OPTION: value, ...}`: `name` (default: the figure's) names the output
`figures/<name>.pdf|png`, so one figure can be built twice with different options; the other keys must be options
the figure declares. A figure with a `groups` option (model groups) gets the config's `models.<m>.group` keys
when the entry does not give them.

Given the study's jobs (config validation), each figure's `check` (kvstudy.plots.catalog) says whether the study can draw it (a press with
a ratio for score_vs_ratio, a task with needle depths for niah_heatmap, ...): a figure it cannot draw is refused
then, not after every job has run.
"""

from __future__ import annotations

import re

from kvstudy.job import Job
from kvstudy.plots import FIGURES

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _entry(i: int, entry, config: dict, seen: dict) -> dict:
    """One `figures:` entry -> {"name", "figure", "options"}; raises ValueError "figures[i]...: message"."""
    if isinstance(entry, str):
        entry = {"figure": entry}
    if not isinstance(entry, dict) or "figure" not in entry:
        raise ValueError(f"figures[{i}]: a figure name or a mapping with a 'figure' key")
    kind = entry["figure"]
    if kind not in FIGURES:
        raise ValueError(f"figures[{i}]: unknown figure {kind!r} (registered: {', '.join(FIGURES)})")
    name = str(entry.get("name", kind))
    if not _NAME.match(name):
        raise ValueError(f"figures[{i}].name: {name!r} is not a file-safe name")
    if name in seen:
        raise ValueError(f"figures[{i}].name: {name!r} is already the name of figures[{seen[name]}]")
    seen[name] = i
    options = {k: v for k, v in entry.items() if k not in ("figure", "name")}
    declared = FIGURES[kind].options
    for key in options:
        if key not in declared:
            known = ", ".join(declared) or "none"
            raise ValueError(f"figures[{i}].{key}: figure {kind!r} has no option {key!r} (options: {known})")
    if "groups" in declared and "groups" not in options:
        groups = {m: spec["group"] for m, spec in (config.get("models") or {}).items() if spec.get("group")}
        if groups:
            options["groups"] = groups
    return {"name": name, "figure": kind, "options": options}


def why_not(spec: dict, jobs: list[Job]) -> str | None:
    """Why the study (its jobs) cannot draw a resolved figure `spec`, or None."""
    check = FIGURES[spec["figure"]].check
    return check(jobs, spec["options"]) if check else None


def resolve(config: dict, jobs: list[Job] | None = None) -> list[dict]:
    """[{"name", "figure", "options"}] in config order; raises ValueError "figures[i]...: message". With the
    study's `jobs` (kvstudy.grid.jobs), a figure they cannot draw is refused too."""
    out, seen = [], {}
    for i, entry in enumerate(config.get("figures") or []):
        spec = _entry(i, entry, config, seen)
        why = why_not(spec, jobs) if jobs is not None else None
        if why:
            raise ValueError(f"figures[{i}]: {spec['figure']} {why}")
        out.append(spec)
    return out


def drawable(config: dict, jobs: list[Job]) -> list:
    """The entries of `figures:` the study can draw (for the default figures of a study that names none)."""
    return [e for i, e in enumerate(config.get("figures") or []) if why_not(_entry(i, e, config, {}), jobs) is None]


def grid_summary(config: dict) -> str:
    """How many eval jobs and samples the study's grid puts behind its figures (from the config, no file read)."""
    from kvstudy.grid import jobs, variants
    from kvstudy.tasks import TASKS

    models, tasks, lengths = config["models"], config["tasks"], config["lengths"]
    seeds, n_variants = config["seeds"], len(variants(config))
    per_task = {}
    for name, t in tasks.items():
        n = t.get("n_samples")
        if n is None:
            cls = TASKS.get(t.get("kind", name))
            n = cls.params().get("n_samples") if cls is not None and hasattr(cls, "params") else None
        per_task[name] = n
    kept = jobs(config)
    left_out = len(models) * len(tasks) * len(lengths) * n_variants * len(seeds) - len(kept)
    counts = ", ".join(f"{k} {v if v is not None else '?'}" for k, v in per_task.items())
    total = (f"; {sum(per_task[j.task] for j in kept):,} samples in all"
             if all(v is not None for v in per_task.values()) else "")
    plural = lambda n, w: f"{n} {w}{'' if n == 1 else 's'}"  # noqa: E731
    excluded = f", less {left_out:,} left out by the study's exclude: entries" if left_out else ""
    return (f"{len(kept):,} eval jobs ({plural(len(models), 'model')} x {plural(len(tasks), 'task')} x "
            f"{plural(len(lengths), 'context length')} x {plural(n_variants, 'press variant')} x "
            f"{plural(len(seeds), 'seed')}{excluded}); samples per job: {counts}{total}. Jobs that ran out of "
            "memory have no samples and are drawn as OOM.")
