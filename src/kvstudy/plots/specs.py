"""A study's `figures:` section -> the figures to build, each with its output name and options.

An entry is either a registered figure name (the form every study used so far: `figures: [score_vs_ratio]`) or a
mapping `{figure: NAME, name: OUTPUT_NAME, OPTION: value, ...}`: `name` (default: the figure's) names the output
`figures/<name>.pdf|png`, so one figure can be built twice with different options; the other keys must be options
the figure declares. A figure with a `groups` option (model groups) gets the config's `models.<m>.group` keys
when the entry does not give them.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def resolve(config: dict) -> list[dict]:
    """[{"name", "figure", "options"}] in config order; raises ValueError "figures[i]...: message"."""
    from kvstudy.plots import FIGURES

    out, seen = [], {}
    for i, entry in enumerate(config.get("figures") or []):
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
        out.append({"name": name, "figure": kind, "options": options})
    return out


def grid_summary(config: dict) -> str:
    """How many eval jobs and samples the study's grid puts behind its figures (from the config, no file read)."""
    from kvstudy.grid import variants
    from kvstudy.tasks import TASKS

    models, tasks, lengths = config["models"], config["tasks"], config["lengths"]
    seeds, n_variants = config.get("seeds", [0]), len(variants(config))
    per_task = {}
    for name, t in tasks.items():
        n = t.get("n_samples")
        if n is None:
            cls = TASKS.get(t.get("kind", name))
            n = cls.params().get("n_samples") if cls is not None and hasattr(cls, "params") else None
        per_task[name] = n
    jobs = len(models) * len(tasks) * len(lengths) * n_variants * len(seeds)
    counts = ", ".join(f"{k} {v if v is not None else '?'}" for k, v in per_task.items())
    known = [v for v in per_task.values() if v is not None]
    total = (f"; {sum(known) * len(models) * len(lengths) * n_variants * len(seeds):,} samples in all"
             if len(known) == len(per_task) else "")
    plural = lambda n, w: f"{n} {w}{'' if n == 1 else 's'}"  # noqa: E731
    return (f"{jobs:,} eval jobs ({plural(len(models), 'model')} x {plural(len(tasks), 'task')} x "
            f"{plural(len(lengths), 'context length')} x {plural(n_variants, 'press variant')} x "
            f"{plural(len(seeds), 'seed')}); samples per job: {counts}{total}. Jobs that ran out of memory "
            "have no samples and are drawn as OOM.")
