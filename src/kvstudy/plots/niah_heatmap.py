"""Needle depth x context length heatmap of the mean sample score, one small panel per press variant.

Rows are methods (no press first, in its own single panel), columns compression ratios; depth is binned into 10
bins on [0, 1] (0 % at the top). Samples come from samples.csv rows with task == "niah", or, where there are none,
from every task with a needle depth. One shared colour bar (0-1); cells are annotated when the grid is small.

A job that ran out of GPU memory has no samples: where results.csv says a variant's job at a length is "oom" (and
samples.csv has nothing for it), that length's column is a hatched grey cell labelled "OOM", not a blank one; a
variant that ran out of memory at every length still gets its panel. A job that failed (status "failed") is a
cross-hatched cell labelled "failed" the same way.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    HATCH,
    TEXT_COLOR,
    families,
    family_labels,
    lost_variants,
    prepare,
    require_columns,
    require_rows,
    scored,
    task_order,
)
from kvstudy.plots.style import length_label, new_figure, ratio_label, task_label

NAME = "niah_heatmap"
N_BINS = 10
CMAP = "viridis"
ANNOTATE_MAX_CELLS = 40  # per panel (10 depth bins x up to 4 lengths)
ANNOTATE_MAX_PANELS = 9


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


def build(tables):
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, PercentFormatter

    df = require_rows(tables.get("samples"), NAME, "samples")
    require_columns(df, NAME, "samples", ["task", "length", "score", "depth"])
    df = scored(prepare(df, NAME, "samples"))
    df, tasks = select_samples(df)
    if df.empty:
        raise ValueError(f"figure {NAME!r}: samples.csv has no scored sample with a needle depth "
                         "(no 'niah' rows and no task with a non-null depth)")
    df = df[(df["depth"] >= 0) & (df["depth"] <= 1)].copy()
    if df.empty:
        raise ValueError(f"figure {NAME!r}: samples.csv has no needle depth in [0, 1]")
    df["bin"] = depth_bin(df["depth"])

    # (model, family, ratio, length) whose job ran out of memory and left no sample
    oom = lost_variants(tables.get("results"), NAME)
    oom = oom[oom["task"].isin(tasks)].sort_values("status")  # "failed" first: it wins over "oom" in a cell
    have = set(zip(df["model"], df["family"], df["compression_ratio"], df["length"]))
    keep = [k not in have for k in zip(oom["model"], oom["family"], oom["compression_ratio"], oom["length"])]
    oom = oom[np.array(keep, dtype=bool)]
    oom_cells = {}
    for key, status in zip(zip(oom["model"], oom["family"], oom["compression_ratio"], oom["length"]), oom["status"]):
        oom_cells.setdefault(key, status)
    every = pd.concat([df[["model", "method", "family", "compression_ratio", "length"]],
                       oom[["model", "method", "family", "compression_ratio", "length"]]], ignore_index=True)

    models = list(dict.fromkeys(every["model"]))
    lengths = sorted(every["length"].unique())
    ratios = sorted(every.loc[every["method"] != "no_press", "compression_ratio"].unique())
    fams = families(every)
    labels = family_labels(fams)
    # one row per (model, family); no_press sits in the first column of its row
    present = set(zip(every["model"], every["family"]))
    rows = [(m, method, fam) for m in models for method, fam in fams if (m, fam) in present]
    col_of = {r: i for i, r in enumerate(ratios)}
    ncols = max(1, len(ratios))
    grid = df.groupby(["model", "family", "compression_ratio", "length", "bin"])["score"].mean().to_dict()

    panels = []  # (row, col, model, method, family, ratio)
    for i, (model, method, fam) in enumerate(rows):
        sub = every[(every["model"] == model) & (every["family"] == fam)]
        for ratio in sorted(sub["compression_ratio"].unique()):
            col = 0 if method == "no_press" else col_of[ratio]
            panels.append((i, col, model, method, fam, ratio))

    n_len = len(lengths)
    annotate = n_len * N_BINS <= ANNOTATE_MAX_CELLS and len(panels) <= ANNOTATE_MAX_PANELS
    panel_w = max(1.45, 0.42 * n_len + 0.55) if not annotate else max(1.6, 0.62 * n_len + 0.6)
    panel_h = 1.55 if not annotate else 2.9
    fig = new_figure(panel_w * ncols + 1.8, panel_h * len(rows) + 0.9)
    gs = fig.add_gridspec(len(rows), ncols)
    norm = Normalize(0.0, 1.0)
    many_models = len(models) > 1
    mesh = None
    axes = []
    for i, col, model, method, fam, ratio in panels:
        ax = fig.add_subplot(gs[i, col])
        axes.append(ax)
        data = np.full((N_BINS, n_len), np.nan)
        for j, length in enumerate(lengths):
            for b in range(N_BINS):
                data[b, j] = grid.get((model, fam, ratio, length, b), np.nan)
        mesh = ax.pcolormesh(np.arange(n_len + 1), np.linspace(0, 1, N_BINS + 1), np.ma.masked_invalid(data),
                             cmap=CMAP, norm=norm, edgecolors="white", linewidth=0.3)
        for j, length in enumerate(lengths):
            lost = oom_cells.get((model, fam, ratio, length))
            if lost:  # no samples: the job ran out of memory or failed
                ax.add_patch(Rectangle((j, 0.0), 1.0, 1.0, facecolor="0.93", edgecolor="0.6", hatch=HATCH[lost],
                                       linewidth=0.0, zorder=1.5, gid=f"{lost}-cell"))
                ax.text(j + 0.5, 0.5, CELL_TEXT[lost], ha="center", va="center", fontsize=9, fontweight="bold",
                        color=TEXT_COLOR[lost], zorder=3, gid=f"{lost}-label",
                        bbox=dict(boxstyle="square,pad=0.2", facecolor="white", edgecolor="none"))
        ax.set_ylim(1.0, 0.0)  # 0 % (start of the context) at the top
        ax.set_xlim(0, n_len)
        ax.set_facecolor("0.85")  # bins without samples
        ax.grid(False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        ax.xaxis.set_major_locator(FixedLocator(np.arange(n_len) + 0.5))
        ax.set_xticklabels([length_label(n) for n in lengths])
        ax.yaxis.set_major_locator(FixedLocator([0.0, 0.5, 1.0]))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.tick_params(length=2.5, pad=2, labelleft=col == 0)
        ax.set_title("full cache" if method == "no_press" else f"ratio {ratio_label(ratio)}", pad=3)
        if col == 0:  # "Needle depth" by the ticks, the row's press variant in bold to its left
            ax.set_ylabel("Needle depth")
            name = textwrap.fill(labels[fam], 14)  # "Expected\nattention": not taller than the panel
            ax.annotate(f"{model}\n{name}" if many_models else name, xy=(0, 0.5), xycoords=ax.yaxis.label,
                        xytext=(-5, 0), textcoords="offset points", rotation=90, ha="right", va="center",
                        fontweight="bold", fontsize=11, multialignment="center")
        if annotate:
            for b in range(N_BINS):
                for j in range(n_len):
                    if np.isfinite(data[b, j]):
                        ax.text(j + 0.5, (b + 0.5) / N_BINS, f"{data[b, j]:.2f}", ha="center", va="center",
                                fontsize=10, color="black" if data[b, j] > 0.55 else "white")

    fig.supxlabel("Context length (tokens)")
    title = "Needle in a haystack" if tasks == ["niah"] else ", ".join(task_label(t) for t in tasks)
    fig.suptitle(title)
    first_row_free = ncols >= 3 and len(rows) >= 2 and sum(1 for p in panels if p[0] == 0) == 1
    if first_row_free:  # the no-press row has one panel: the colour bar goes in the space beside it
        holder = fig.add_subplot(gs[0, 1:])
        holder.axis("off")
        cax = holder.inset_axes([0.08, 0.5, 0.84, 0.11])
        cbar = fig.colorbar(mesh, cax=cax, orientation="horizontal")
        cbar.set_label("Mean score", labelpad=3)
    else:
        cbar = fig.colorbar(mesh, ax=axes, shrink=min(1.0, 3.0 / max(1, len(rows)) + 0.25), aspect=25, pad=0.03)
        cbar.set_label("Mean score")
    cbar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    if oom_cells:
        _fit_oom_labels(fig)
    return fig


def _fit_oom_labels(fig):
    """Turn an "OOM" cell label upright where the column is too narrow for it (with the final layout)."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        column = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
        for text in ax.texts:
            lost = text.get_gid() in ("oom-label", "failed-label")
            if lost and text.get_window_extent(renderer).width > 0.8 * column:
                text.set_rotation(90)
