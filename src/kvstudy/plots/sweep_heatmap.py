"""Hyper-parameter sweep heatmap: mean score over two press parameters (e.g. window size x cache size, or window
size x compression ratio), one row of panels per press method, one panel per task (from results.csv).

Parameters are the keys of results.csv's `params` (JSON) plus `compression_ratio`. By default each method uses the
two of its parameters that take the most values (a method with fewer than two varying parameters is left out);
options `x` and `y` name them, `methods` picks methods, `tasks` picks tasks. A cell is the mean over samples,
seeds, context lengths and any other varying parameter. A cell whose jobs all ran out of memory is a hatched
"OOM" cell, one whose jobs failed (none ok) a cross-hatched "failed" cell, never a score; a combination the study
did not run stays blank. The axes are the press parameters as configured (a decoding press's nominal ratio).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kvstudy.plots._common import CELL_TEXT, HATCH, TEXT_COLOR, prepare, require_columns, require_rows, task_order
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


def build(tables, x=None, y=None, methods=None, tasks=None):
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score", "status", "params"])
    df = prepare(df, NAME, "results")
    df["task"] = df["task"].astype(str)
    df = df[df["method"] != "no_press"]
    if methods is not None:
        df = df[df["method"].isin(methods)]
    if tasks is not None:
        df = df[df["task"].isin([str(t) for t in tasks])]
    if df.empty:
        raise ValueError(f"figure {NAME!r}: no compressed-press jobs (after the methods/tasks options)")
    wide = _params(df)
    params = list(wide.columns)
    df = pd.concat([df.drop(columns=[c for c in params if c in df.columns and c != "compression_ratio"]),
                    wide.drop(columns=["compression_ratio"])], axis=1)
    status = df["status"].fillna("").astype(str)
    df = df.assign(_ok=status.eq("ok"), _oom=status.eq("oom"), _failed=status.eq("failed"))

    panels = []  # (method, xparam, yparam)
    for method in method_order(df["method"].unique()):
        sub = df[df["method"] == method]
        pair = _axes_for(sub, params, x, y)
        if pair is not None:
            panels.append((method, *pair))
    if not panels:
        raise ValueError(f"figure {NAME!r}: no press method sweeps two parameters "
                         f"(parameters seen: {', '.join(params)}); name them with the x and y options")
    task_list = task_order(df["task"])

    fig_rows = []
    for method, xp, yp in panels:
        sub = df[df["method"] == method].copy()
        sub[xp], sub[yp] = sub[xp].map(_fmt), sub[yp].map(_fmt)
        xs = sorted(sub[xp].unique(), key=_sort_key)
        ys = sorted(sub[yp].unique(), key=_sort_key)
        fig_rows.append((method, xp, yp, sub, xs, ys))
    max_x = max(len(r[4]) for r in fig_rows)
    max_y = max(len(r[5]) for r in fig_rows)
    pw, ph = 0.7 * max_x + 1.3, 0.45 * max_y + 1.3
    fig = new_figure(pw * len(task_list) + 1.6, ph * len(fig_rows) + 0.3)
    axes = np.atleast_2d(fig.subplots(len(fig_rows), len(task_list), squeeze=False))
    scores = pd.to_numeric(df.loc[df["_ok"], "score"], errors="coerce").dropna()
    # scores in [0, 1] share the 0-1 scale of the other heatmaps; others (perplexity) span their own range
    norm = Normalize(0.0, 1.0) if scores.between(0, 1).all() else Normalize(scores.min(), scores.max())
    mesh = None
    for r, (method, xp, yp, sub, xs, ys) in enumerate(fig_rows):
        for c, task in enumerate(task_list):
            ax = axes[r, c]
            cell = sub[sub["task"] == task]
            scores = cell[cell["_ok"]].groupby([yp, xp])["score"].mean()
            any_ok = cell.groupby([yp, xp])["_ok"].any()
            any_oom = cell.groupby([yp, xp])["_oom"].any()
            any_failed = cell.groupby([yp, xp])["_failed"].any()
            data = np.full((len(ys), len(xs)), np.nan)
            for i, yv in enumerate(ys):
                for j, xv in enumerate(xs):
                    data[i, j] = scores.get((yv, xv), np.nan)
            mesh = ax.pcolormesh(np.arange(len(xs) + 1), np.arange(len(ys) + 1), np.ma.masked_invalid(data),
                                 cmap=CMAP, norm=norm, edgecolors="white", linewidth=0.5)
            for i, yv in enumerate(ys):
                for j, xv in enumerate(xs):
                    lost = ("failed" if any_failed.get((yv, xv), False) else "oom" if any_oom.get((yv, xv), False)
                            else None)
                    if lost and not any_ok.get((yv, xv), False):
                        ax.add_patch(Rectangle((j, i), 1, 1, facecolor="0.93", edgecolor="0.6", hatch=HATCH[lost],
                                               lw=0, gid=f"{lost}-cell"))
                        ax.text(j + 0.5, i + 0.5, CELL_TEXT[lost], ha="center", va="center", fontsize=10,
                                fontweight="bold", color=TEXT_COLOR[lost], gid=f"{lost}-label")
                    elif np.isfinite(data[i, j]):
                        ax.text(j + 0.5, i + 0.5, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=10,
                                color="black" if norm(data[i, j]) > 0.55 else "white")
            ax.set_xlim(0, len(xs))
            ax.set_ylim(0, len(ys))
            ax.set_facecolor("0.97")
            ax.grid(False)
            ax.set_xticks(np.arange(len(xs)) + 0.5, xs)
            ax.set_yticks(np.arange(len(ys)) + 0.5, ys)
            ax.tick_params(length=0)
            ax.set_xlabel(xp.replace("_", " "))
            ax.set_ylabel(yp.replace("_", " ") if c == 0 else "")
            ax.set_title(f"{method_label(method)} · {task_label(task)}")
    cbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9, aspect=30, pad=0.02)
    cbar.set_label("Mean score")
    return fig


def _sort_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
