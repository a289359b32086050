"""Every figure of kvstudy: its name, caption, the tables it reads, its options and what a study needs to draw it.

Declared here, apart from the drawing code: validating a study (`kvstudy.config` -> `kvstudy.plots.specs`) reads
this catalog and the checks below, and imports neither matplotlib nor pandas nor a figure module. A figure's
`build` lives in the module named like the figure (`kvstudy.plots.<name>`), imported when it is drawn.
"""

from __future__ import annotations

import json

from kvstudy.job import Job
from kvstudy.plots.registry import Figure, register

# --- helpers of the checks: each takes the study's jobs (kvstudy.grid.jobs) and the entry's options -------------


def baseline_pairs(jobs: list[Job]) -> set[tuple]:
    """(model, task, length) cells with both a no_press job and a compressed one (what a paired comparison needs)."""
    cell = lambda j: (j.model, j.task, j.length)  # noqa: E731
    base = {cell(j) for j in jobs if j.method == "no_press"}
    return {cell(j) for j in jobs if j.method != "no_press" and cell(j) in base}


def unknown_values(options: dict, key: str, known: set, norm=lambda v: v) -> str | None:
    """Why option `key` (a list) names something the study does not have, or None."""
    for value in options.get(key) or []:
        if norm(value) not in known:
            return f"option {key}: {value!r} is not in this study ({', '.join(sorted(map(str, known)))})"
    return None


# --- the checks ---------------------------------------------------------------------------------------------------


def _ratio_axis(jobs, options):
    """The x axis is the compression ratio: a study of unratioed presses only (no_press, int4, ...) has none."""
    if not any(j.compression_ratio > 0 for j in jobs):
        methods = ", ".join(sorted({j.method for j in jobs}))
        return f"needs a press with a compression_ratio (this study has {methods})"
    return None


def _paired(jobs, options):
    """Paired tests against no_press need both in one (model, task, length)."""
    return None if baseline_pairs(jobs) else ("needs a no_press baseline and a compressed variant of the same "
                                              "model, task and length (its cells are paired tests against no_press)")


def _needles(jobs, options):
    """Samples with a needle depth come from the tasks that place a needle (`Task.depths`)."""
    from kvstudy.tasks import TASKS

    if not any(getattr(TASKS.get(j.task_kind), "depths", False) for j in jobs):
        with_depths = ", ".join(n for n, t in TASKS.items() if t.depths)
        return f"needs a task whose samples have a needle depth ({with_depths})"
    return None


def _lengths(jobs, options):
    """Lines over context length need two lengths; the options must name the study's methods and ratios."""
    if len({j.length for j in jobs}) < 2:
        return "needs at least two context lengths (lengths:)"
    return (unknown_values(options, "methods", {j.method for j in jobs})
            or unknown_values(options, "ratios", {round(j.compression_ratio, 6) for j in jobs},
                              lambda r: round(float(r), 6)))


def _groups(jobs, options):
    """Two groups of the study's models, and a variant to compare with each model's own no_press score."""
    why = unknown_values(options, "tasks", {j.task for j in jobs}, str)
    if why:
        return why
    groups = options.get("groups") or {}
    present = {groups[j.model] for j in jobs if j.model in groups}
    if len(present) < 2:
        return ("needs at least two model groups among the study's models (set models.<name>.group, or the "
                f"figure's groups option; groups now: {', '.join(sorted(present)) or 'none'})")
    if not any(model in groups for model, _, _ in baseline_pairs(jobs)):
        return "needs a no_press baseline and a compressed variant of the same grouped model, task and length"
    return None


def _swept_values(jobs, methods, tasks) -> dict[str, dict[str, set]]:
    """method -> parameter -> the values its variants take (compression_ratio included)."""
    values: dict[str, dict[str, set]] = {}
    for j in jobs:
        if j.method != "no_press" and (not methods or j.method in methods) and (
                not tasks or j.task in map(str, tasks)):
            for k, v in {**j.params, "compression_ratio": j.compression_ratio}.items():
                if v is not None:
                    values.setdefault(j.method, {}).setdefault(k, set()).add(json.dumps(v))
    return values


def _sub_scores(jobs) -> set[str]:
    """The results.csv sub-score columns the study's tasks fill (kvstudy.metric_columns): judged cite's citation
    pair and each task's extra metrics."""
    from kvstudy.job import thaw
    from kvstudy.metric_columns import JUDGED, task_metrics

    tasks = {(j.task_kind, json.dumps(thaw(j.task_params), sort_keys=True)) for j in jobs}
    out = {m for kind, params in tasks for m in task_metrics(kind, json.loads(params))}
    return out | (set(JUDGED) if any(kind == "helmet_cite" for kind, _ in tasks) else set())


def _sweep(jobs, options):
    """A method (of `methods`) with two parameters to draw: both of `x` and `y` where given, else two that vary."""
    x, y, methods, tasks = (options.get(k) for k in ("x", "y", "methods", "tasks"))
    why = (unknown_values(options, "methods", {j.method for j in jobs})
           or unknown_values(options, "tasks", {j.task for j in jobs}, str)
           or unknown_values(options, "models", {j.model for j in jobs}, str)
           or unknown_values(options, "metrics", {"score", *_sub_scores(jobs)}))
    if why:
        return why
    seen = []
    for method, params in _swept_values(jobs, methods, tasks).items():
        varying = {k for k, v in params.items() if len(v) > 1}
        if (x is None or x in params) and (y is None or y in params) and len(varying | {x, y} - {None}) >= 2:
            return None
        seen.append(f"{method} varies {', '.join(sorted(varying)) or 'nothing'}")
    wanted = f"parameters {x} and {y}" if x and y else "two varying parameters"
    return f"needs a compressed press with {wanted} ({'; '.join(seen) or 'the study has none'})"


def _pareto_view(jobs, options):
    """The Pareto figures' filters name the study's models, methods and tasks; a layout is 1x2 or 2x2."""
    layout, colour_by, tasks = options.get("layout"), options.get("colour_by", "model"), options.get("tasks")
    if layout is not None and layout not in ("1x2", "2x2"):
        return f"option layout: {layout!r} is not 1x2 or 2x2"
    if colour_by not in ("model", "method"):
        return f"option colour_by: {colour_by!r} is not model or method"
    if layout is not None and tasks is not None and len(tasks) != 1:
        return f"option layout draws one task (tasks: {tasks})"
    return (unknown_values(options, "models", {j.model for j in jobs}, str)
            or unknown_values(options, "methods", {j.method for j in jobs})
            or unknown_values(options, "tasks", {j.task for j in jobs}, str))


# --- the figures --------------------------------------------------------------------------------------------------

register(Figure("score_vs_ratio", "score vs compression ratio per task x length, one line per method "
                "(quantized variants at the fraction of KV memory they save)", ("results",),
                options={"average": "true: add a column of panels with the mean over (higher-is-better) tasks"},
                check=_ratio_axis))
PARETO_OPTIONS = {
    "layout": "1x2: score vs KV memory and vs time to first token side by side; 2x2: and latency vs memory (one "
              "task: the one in tasks, else the task mean)",
    "together": "true: every model of a task in one panel (a panel per task), no front",
    "colour_by": "model (default) or method: what a colour is in layout / together panels (the marker: the other)",
    "models": "list of models to draw (default: all)",
    "methods": "list of methods to draw, no_press always kept (default: all)",
    "tasks": "list of tasks to draw (default: all, and the task mean)",
}
register(Figure("pareto_memory", "score vs KV-cache memory per task x length with the memory Pareto front; "
                "OOM variants noted", ("pareto", "results"),
                options={**PARETO_OPTIONS, "memory": "kv (default: the KV cache held) or peak (peak memory where "
                         "measured, CUDA; else KV memory, said under the axis)"}, check=_pareto_view))
register(Figure("pareto_latency", "score vs time to first token per task x length with the latency Pareto front "
                "(intervals drawn); OOM noted", ("pareto", "results"), options=PARETO_OPTIONS, check=_pareto_view))
register(Figure("niah_heatmap", "mean score by needle depth, one labelled row per press variant, a panel per "
                "model x context length; OOM rows marked", ("samples", "results"), check=_needles))
register(Figure("delta_heatmap", "score difference to the baseline, variants x tasks per model x length, one "
                "colour scale per metric, significance starred", ("results", "significance"), check=_paired))
register(Figure("context_scaling", "latency, throughput (timing medians and intervals) and memory vs context "
                "length per press variant; OOM lengths marked", ("results",), uses=("timing",),
                options={"methods": "list of methods to show (default: all)",
                         "ratios": "list of compression ratios to show (default: all)"}, check=_lengths))
register(Figure("throughput_vs_ratio", "decode throughput vs compression ratio per model x length, one line per "
                "method (timing medians and intervals where timed)", ("results",), uses=("timing",),
                check=_ratio_axis))
register(Figure("runtime_vs_ratio", "runtime per call vs compression ratio per model x timed length, warm (timing "
                "medians and intervals) and cold (first call after the model load, timing.cold) per method",
                ("timing",), options={"measure": "run_seconds (default), ttft_seconds or prefill_seconds"},
                check=_ratio_axis))
register(Figure("model_groups", "score change vs own baseline against compression ratio, one line per model group",
                ("results",), options={"groups": "model -> group (default: models.<m>.group in the config)",
                                       "tasks": "list of tasks to average over (default: every task scored in [0, 1])"},
                check=_groups))
register(Figure("sweep_heatmap", "mean score over two press parameters per method x task (sweep heatmap); OOM "
                "cells hatched", ("results",), options={
                    "x": "parameter on the x axis (default: the most-varied one)",
                    "y": "parameter on the y axis (default: the next most-varied one)",
                    "methods": "list of methods to show (default: every method that sweeps two parameters)",
                    "tasks": "list of tasks to show (default: all)",
                    "models": "list of models to pool (default: all; one figure entry per model draws each alone)",
                    "metrics": "what cells show: score (default), citation_precision, citation_recall (judged "
                               "sub-scores) or a task's extra metric (e.g. token_f1), a column of panels each for "
                               "the tasks that have them"},
                check=_sweep))
register(Figure("tuning_sweep", "press hyper-parameter sweep (dev split), chosen configurations marked",
                ("tuning_candidates",)))
