"""Needle depth heatmap of the mean sample score: one row per press variant (every row labelled, in its method's
colour), needle depth across (10 bins on [0, 1]), one panel per (model, context length).

Samples come from samples.csv rows with task == "niah", or, where there are none, from every task with a needle
depth. One shared colour bar (0-1). The figure grows with its content: a row is about a quarter inch, a panel
1.6 inches wide (six side by side at most, then a row per model), so three models with twenty variants stay
readable without shrinking the text.

A job that ran out of GPU memory has no samples: where results.csv says a variant's jobs at a length are "oom"
(and samples.csv has nothing for it), its row in that panel is a hatched grey bar labelled "OOM", not a blank one;
a variant out of memory at every length still has its row. A job that failed is a cross-hatched "failed" bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots._common import lost_variants, prepare, require_columns, require_rows, scored, task_order
from kvstudy.plots._heatmap import ROW_INCH, heat_axes, label_inches, label_rows, lost_cell, variant_rows
from kvstudy.plots.style import length_label, new_figure, task_label

NAME = "niah_heatmap"
N_BINS = 10
CMAP = "viridis"
PANEL_INCH = 1.6
MAX_COLS = 6  # panels side by side before the models go into rows


def select_samples(df):
    """Rows of task "niah"; if there are none, rows of every task with a needle depth."""
    niah = df[(df["task"] == "niah") & df["depth"].notna()]
    if len(niah):
        return niah, ["niah"]
    other = df[df["depth"].notna()]
    return other, task_order(other["task"])


def depth_bin(depth):
    """Bin index 0..N_BINS-1 of depths in [0, 1] (depth 1.0 goes to the last bin)."""
    return np.clip(np.floor(np.asarray(depth, float) * N_BINS), 0, N_BINS - 1).astype(int)


def _samples(tables) -> tuple[pd.DataFrame, list[str]]:
    df = require_rows(tables.get("samples"), NAME, "samples")
    require_columns(df, NAME, "samples", ["task", "length", "score", "depth"])
    df, tasks = select_samples(scored(prepare(df, NAME, "samples")))
    if df.empty:
        raise ValueError(f"figure {NAME!r}: samples.csv has no scored sample with a needle depth "
                         "(no 'niah' rows and no task with a non-null depth)")
    df = df[(df["depth"] >= 0) & (df["depth"] <= 1)]
    if df.empty:
        raise ValueError(f"figure {NAME!r}: samples.csv has no needle depth in [0, 1]")
    return df.assign(bin=depth_bin(df["depth"])), tasks


def _lost(results, df: pd.DataFrame, tasks) -> pd.DataFrame:
    """Variants (model, press, length) whose jobs ran out of memory or failed and left no sample."""
    lost = lost_variants(results, NAME)
    lost = lost[lost["task"].isin(tasks)].sort_values("status")  # "failed" first: it wins in a cell
    have = set(zip(df["model"], df["press"], df["length"]))
    keep = np.array([k not in have for k in zip(lost["model"], lost["press"], lost["length"])], dtype=bool)
    return lost[keep].drop_duplicates(["model", "press", "length"])


def _panel(ax, model, length, rows, grid, lost, norm):
    data = np.array([[grid.get((model, press, length, b), np.nan) for b in range(N_BINS)] for press, _, _ in rows])
    mesh = ax.pcolormesh(np.arange(N_BINS + 1), np.arange(len(rows) + 1), np.ma.masked_invalid(data), cmap=CMAP,
                         norm=norm, edgecolors="white", linewidth=0.3)
    for i, (press, _, _) in enumerate(rows):
        if (model, press, length) in lost:
            lost_cell(ax, 0, i, lost[(model, press, length)], width=N_BINS)
    heat_axes(ax)
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([0, N_BINS / 2, N_BINS], ["0%", "50%", "100%"])
    for tick, ha in zip(ax.get_xticklabels(), ("left", "center", "right")):  # apart from the next panel's
        tick.set_ha(ha)
    return mesh


def build(tables):
    from matplotlib.colors import Normalize

    df, tasks = _samples(tables)
    lost = _lost(tables.get("results"), df, tasks)
    cols = ["model", "press", "method", "family", "compression_ratio", "length"]
    every = pd.concat([df[cols], lost[cols]], ignore_index=True)
    rows, models = variant_rows(every), list(dict.fromkeys(every["model"]))
    lengths = sorted(every["length"].unique())
    grid = df.groupby(["model", "press", "length", "bin"])["score"].mean().to_dict()
    lost_at = dict(zip(zip(lost["model"], lost["press"], lost["length"]), lost["status"]))
    panels = [(m, n) for m in models for n in lengths]
    ncols = len(panels) if len(panels) <= MAX_COLS else len(lengths)  # models side by side while they fit
    nrows = -(-len(panels) // ncols)
    height = ROW_INCH * len(rows) + 0.75
    fig = new_figure(PANEL_INCH * ncols + label_inches(r[1] for r in rows) + 1.0, height * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    norm, mesh = Normalize(0.0, 1.0), None
    for k, (model, length) in enumerate(panels):
        ax = axes.flat[k]
        mesh = _panel(ax, model, length, rows, grid, lost_at, norm)
        label_rows(ax, rows, show=k % ncols == 0)
        # model over length on two lines: side by side, "gemma3 · 256 tokens" runs into its neighbour's title
        ax.set_title(f"{model}\n{length_label(length)} tokens" if len(models) > 1 else f"{length_label(length)} tokens")
    fig.supxlabel("Needle depth (position in the context)")
    fig.suptitle("Needle in a haystack" if tasks == ["niah"] else ", ".join(task_label(t) for t in tasks))
    cbar = fig.colorbar(mesh, ax=axes, shrink=min(1.0, 3.5 / (height * nrows)), aspect=15, pad=0.02)
    cbar.set_label("Mean score")
    cbar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    return fig
