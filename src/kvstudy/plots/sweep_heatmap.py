"""Hyper-parameter sweep heatmap: mean score over two press parameters (e.g. window size x cache size, or window
size x compression ratio), one row of panels per press method, one panel per task (from results.csv).

Parameters are the keys of results.csv's `params` (JSON) plus `compression_ratio`. By default each method uses the
two of its parameters that take the most values (a method with fewer than two varying parameters is left out);
options `x` and `y` name them, `methods` picks methods, `tasks` picks tasks, `models` picks models (one entry per
model draws the log's per-model x task heatmaps), `metrics` picks what a cell shows: `score` (default) and/or a
judged task's sub-scores `citation_precision`, `citation_recall` or a task's extra metrics (`token_f1`, ...;
results.csv columns, kvstudy.metric_columns), one
column of panels per task x metric, a sub-score only for the tasks that have it (the log's citation heatmaps).
A cell is the mean over samples, seeds, context lengths, the
models drawn and any other varying parameter. A cell whose jobs all ran out of memory is a hatched
"OOM" cell, one whose jobs failed (none ok) a cross-hatched "failed" cell, never a score; a combination the study
did not run stays blank. The axes are the press parameters as configured (a decoding press's nominal ratio).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd

from kvstudy.metric_columns import JUDGED, in_table
from kvstudy.plots._common import prepare, require_columns, require_rows, task_order
from kvstudy.plots._heatmap import heat_axes, lost_cell
from kvstudy.plots.tables import lower_is_better
from kvstudy.plots.style import method_label, method_order, new_figure, task_label

NAME = "sweep_heatmap"
CMAP = "viridis"


def _params(df: pd.DataFrame) -> pd.DataFrame:
    """One column per press parameter (from the params JSON), plus compression_ratio."""
    parsed = [json.loads(p) if isinstance(p, str) and p.strip() else {} for p in df["params"]]
    wide = pd.DataFrame(parsed, index=df.index)
    wide["compression_ratio"] = df["compression_ratio"]
    return wide


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _axes_for(sub: pd.DataFrame, params: list[str], x: str | None, y: str | None) -> tuple[str, str] | None:
    """The (x, y) parameters of one method: as given, else the two that take the most values."""
    varying = {p: sub[p].dropna().nunique() for p in params if sub[p].dropna().nunique() > 1}
    if x is not None and y is not None:
        given = x in sub.columns and y in sub.columns and sub[x].notna().any() and sub[y].notna().any()
        return (x, y) if given else None
    ranked = sorted(varying, key=lambda p: (-varying[p], p))
    if x is not None:
        ranked = [x] + [p for p in ranked if p != x]
    if y is not None:
        ranked = [p for p in ranked if p != y][:1] + [y]
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def _selected(tables, methods, tasks, models=None) -> pd.DataFrame:
    """Compressed-press jobs (of `methods`, `tasks`, `models`) with one column per press parameter and status
    flags."""
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score", "status", "params"])
    df = prepare(df, NAME, "results")
    df = df[df["method"] != "no_press"]
    if methods is not None:
        df = df[df["method"].isin(methods)]
    if tasks is not None:
        df = df[df["task"].isin([str(t) for t in tasks])]
    if models is not None:
        df = df[df["model"].isin([str(m) for m in models])]
    if df.empty:
        raise ValueError(f"figure {NAME!r}: no compressed-press jobs (after the methods/tasks/models options)")
    wide = _params(df)
    df = pd.concat([df.drop(columns=[c for c in wide.columns if c in df.columns and c != "compression_ratio"]),
                    wide.drop(columns=["compression_ratio"])], axis=1)
    status = df["status"].fillna("").astype(str)
    return df.assign(_ok=status.eq("ok"), _oom=status.eq("oom"), _failed=status.eq("failed")), list(wide.columns)


def _rows(df, params, x, y) -> list[tuple]:
    """(method, x parameter, y parameter, its jobs, x values, y values) per method that sweeps two parameters."""
    out = []
    for method in method_order(df["method"].unique()):
        sub = df[df["method"] == method].copy()
        pair = _axes_for(sub, params, x, y)
        if pair is None:
            continue
        xp, yp = pair
        sub[xp], sub[yp] = sub[xp].map(_fmt), sub[yp].map(_fmt)
        out.append((method, xp, yp, sub, sorted(sub[xp].unique(), key=_sort_key),
                    sorted(sub[yp].unique(), key=_sort_key)))
    if not out:
        raise ValueError(f"figure {NAME!r}: no press method sweeps two parameters "
                         f"(parameters seen: {', '.join(params)}); name them with the x and y options")
    return out


def _columns(df: pd.DataFrame, tasks: list[str], metrics) -> list[tuple[str, str]]:
    """(task, metric) per column of panels: every task's score, a sub-score where the task has one."""
    metrics = list(metrics or ["score"])
    # results.csv columns a cell can show (kvstudy.metric_columns): the judged pair always, extra metrics present
    shown = list(dict.fromkeys(["score", *JUDGED, *in_table(df.columns)]))
    unknown = [m for m in metrics if m not in shown]
    if unknown:
        raise ValueError(f"figure {NAME!r}: option metrics: {unknown[0]!r} is not one of {', '.join(shown)}")
    require_columns(df, NAME, "results", metrics)
    cols = [(t, m) for t in tasks for m in metrics
            if m == "score" or pd.to_numeric(df.loc[df["task"] == t, m], errors="coerce").notna().any()]
    if not cols:
        raise ValueError(f"figure {NAME!r}: no task has {' or '.join(metrics)} (option metrics)")
    return cols


def _task_norm(cells: pd.DataFrame):
    """A task's colour scale: 0-1 for scores in [0, 1], log for a positive lower-is-better score (perplexity),
    else its own linear range; and the colour map (reversed where lower is better, so bright is good)."""
    from matplotlib.colors import LogNorm, Normalize

    ok = cells[cells["_ok"]]
    scores = pd.to_numeric(ok["score"], errors="coerce").dropna()
    lower = bool(len(ok)) and bool(lower_is_better(ok).all())
    if scores.empty or scores.between(0, 1).all():
        return Normalize(0.0, 1.0), CMAP
    if lower and (scores > 0).all():
        return LogNorm(scores.min(), scores.max()), CMAP + "_r"
    return Normalize(scores.min(), scores.max()), CMAP + "_r" if lower else CMAP


def _panel(ax, cell, xp, yp, xs, ys, norm, cmap):
    scores = cell[cell["_ok"]].groupby([yp, xp])["score"].mean()
    flags = cell.groupby([yp, xp])[["_ok", "_oom", "_failed"]].any()
    data = np.array([[scores.get((yv, xv), np.nan) for xv in xs] for yv in ys], dtype=float).reshape(len(ys), len(xs))
    mesh = ax.pcolormesh(np.arange(len(xs) + 1), np.arange(len(ys) + 1), np.ma.masked_invalid(data), cmap=cmap,
                         norm=norm, edgecolors="white", linewidth=0.5)
    for (i, yv), (j, xv) in itertools.product(enumerate(ys), enumerate(xs)):
        f = flags.loc[(yv, xv)] if (yv, xv) in flags.index else None
        lost = None if f is None or f["_ok"] else "failed" if f["_failed"] else "oom" if f["_oom"] else None
        if lost:
            lost_cell(ax, j, i, lost, fontsize=10)
        elif np.isfinite(data[i, j]):
            v = data[i, j]
            text = f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}" if abs(v) < 1e5 else f"{v:.0e}"
            r, g, b, _ = mesh.cmap(norm(v))  # black on a light cell, white on a dark one
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=10,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    heat_axes(ax)
    ax.set_xlim(0, len(xs))
    ax.set_ylim(0, len(ys))
    ax.set_xticks(np.arange(len(xs)) + 0.5, xs)
    ax.set_yticks(np.arange(len(ys)) + 0.5, ys)
    return mesh


def build(tables, x=None, y=None, methods=None, tasks=None, models=None, metrics=None):
    df, params = _selected(tables, methods, tasks, models)
    rows, columns = _rows(df, params, x, y), _columns(df, task_order(df["task"]), metrics)
    pw, ph = 0.7 * max(len(r[4]) for r in rows) + 1.3, 0.45 * max(len(r[5]) for r in rows) + 1.3
    fig = new_figure(pw * len(columns) + 1.0, ph * len(rows) + 1.2)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    scales: dict[str, tuple] = {}  # scores in [0, 1] share one colour bar; any other score has its own
    for c, (task, metric) in enumerate(columns):
        shown = lambda d: d.assign(score=pd.to_numeric(d[metric], errors="coerce"))  # noqa: E731  the metric drawn
        norm, cmap = _task_norm(shown(df[df["task"] == task]))
        for r, (method, xp, yp, sub, xs, ys) in enumerate(rows):
            mesh = _panel(axes[r, c], shown(sub[sub["task"] == task]), xp, yp, xs, ys, norm, cmap)
            axes[r, c].set_xlabel(xp.replace("_", " "))
            axes[r, c].set_ylabel(yp.replace("_", " ") if c == 0 else "")
            what = "" if metric == "score" else f" · {metric.replace('_', ' ')}"
            axes[r, c].set_title(f"{method_label(method)} · {task_label(task)}{what}")
        key = "unit" if (norm.vmin, norm.vmax, cmap) == (0.0, 1.0, CMAP) else task
        scales.setdefault(key, (mesh, []))[1].extend(axes[:, c])
    for key, (mesh, cols) in scales.items():
        cbar = fig.colorbar(mesh, ax=cols, location="bottom", shrink=0.9, aspect=20)
        cbar.set_label("Mean score" if key == "unit" else f"{task_label(key)}: mean score (own scale)")
    return fig


def _sort_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
