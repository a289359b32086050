"""Sweep heatmap of a press hyper-parameter search (kvstudy.tuning), the chosen configurations marked.

One panel per (model, searched press): rows are the candidates (labelled by their searched parameters), columns
the tasks and "all tasks" (the global objective: mean over tasks). Cells show the dev-split objective (score:
higher is better; combined: attention-output error + penalty x (1 - score), lower is better, so its colour scale
is reversed). A black frame marks the per-task choice in each task column; a red frame marks the global choice in
the "all tasks" column. Candidates that ran out of memory are hatched grey with "OOM".
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kvstudy.plots._common import OOM_TEXT_COLOR, as_bool, require_columns, require_rows
from kvstudy.plots.style import new_figure, task_label

NAME = "tuning_sweep"
COLUMNS = ["model", "search", "press", "task", "objective", "oom", "params", "chosen_global", "chosen_task",
           "objective_name"]
GLOBAL_COLOR = "#d00000"


def _label(params: str) -> str:
    p = json.loads(params) if isinstance(params, str) and params else {}
    return " ".join(f"{k}={v}" for k, v in sorted(p.items())) or "(default)"


def _cells(ax, g, rows, tasks, lower, vmin, vmax) -> None:
    """OOM hatching, values, and the frames of the chosen candidates."""
    from matplotlib.patches import Rectangle

    for r in g.itertuples():
        i, j = rows.index(r.press), tasks.index(r.task)
        if r.oom:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", hatch="///", edgecolor="0.5"))
            ax.text(j, i, "OOM", ha="center", va="center", color=OOM_TEXT_COLOR, fontsize=9, fontweight="bold")
        elif np.isfinite(r.objective) and len(rows) * len(tasks) <= 80:
            shade = (r.objective - vmin) / (vmax - vmin or 1)
            dark = shade > 0.5 if lower else shade < 0.5
            ax.text(j, i, f"{r.objective:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
        if (r.task == "all" and r.chosen_global) or (r.task != "all" and r.chosen_task):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, linewidth=2.2,
                                   edgecolor=GLOBAL_COLOR if r.task == "all" else "black"))


def _panel(fig, ax, g, model, search) -> None:
    rows = list(dict.fromkeys(g.press))
    tasks = [t for t in dict.fromkeys(g.task) if t != "all"] + (["all"] if (g.task == "all").any() else [])
    lower = (str(g.better.iloc[0]) == "lower") if "better" in g.columns else str(g.objective_name.iloc[0]) == "combined"
    bounded = str(g.objective_name.iloc[0]) == "score" and not lower  # a score in [0, 1]
    grid = np.full((len(rows), len(tasks)), np.nan)
    for r in g.itertuples():
        grid[rows.index(r.press), tasks.index(r.task)] = r.objective
    vals = grid[np.isfinite(grid)]
    vmin, vmax = (0.0, 1.0) if bounded else (0.0, max(float(vals.max()) if vals.size else 1.0, 1e-9))
    ax.grid(False)
    im = ax.imshow(grid, aspect="auto", cmap="viridis_r" if lower else "viridis", vmin=vmin, vmax=vmax)
    labels = {p: _label(g[g.press == p].params.iloc[0]) for p in rows}
    ax.set_yticks(range(len(rows)), [labels[p] for p in rows])
    ax.set_xticks(range(len(tasks)), ["all tasks" if t == "all" else task_label(t) for t in tasks])
    what = "score" if str(g.objective_name.iloc[0]) == "score" else "objective"
    ax.set_title(f"{model} · {search} · dev {what}{' (lower is better)' if lower else ''}")
    _cells(ax, g, rows, tasks, lower, vmin, vmax)
    fig.colorbar(im, ax=ax, shrink=0.9, label=what)


def build(tables):
    df = require_rows(tables["tuning_candidates"], NAME, "tuning_candidates")
    require_columns(df, NAME, "tuning_candidates", COLUMNS)
    df = df.copy()
    df["objective"] = pd.to_numeric(df["objective"], errors="coerce")
    for col in ("oom", "chosen_global", "chosen_task"):
        df[col] = as_bool(df[col])
    panels = list(dict.fromkeys(zip(df["model"].astype(str), df["search"].astype(str))))
    heights = [max(1.2, 0.32 * df[(df.model == m) & (df.search == s)].press.nunique() + 0.9) for m, s in panels]
    longest = max(len(_label(p)) for p in df["params"])
    ntasks = df["task"].nunique()
    fig = new_figure(max(6.5, 0.075 * longest + 0.9 * ntasks + 2.0), sum(heights) + 0.3)  # labels and cells fit
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (model, search) in zip(axes, panels):
        _panel(fig, ax, df[(df.model == model) & (df.search == search)], model, search)
    fig.supxlabel("frames: black = per-task choice, red = global choice", fontsize=9)
    return fig
