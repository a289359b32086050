"""Score change against the baseline, press variants (rows, every one labelled) x tasks (columns), one row of panels
per (model, context length), one column of panels and one colour scale per kind of score.

The change is the job scores' of results.csv (variant against no_press in the same cell and seed, then the mean over
seeds). Scores of one kind share a colour scale, and only they: accuracy-like scores in [0, 1] show the difference
(variant - no_press, signed so that positive is better) on a diverging scale centred on 0; a lower-is-better score
with positive values (perplexity, which goes from 10 to 1e13 when a press breaks the model) shows the ratio
variant / no_press on its own logarithmic scale centred on x1 (blue: lower, better), so a perplexity blow-up
no longer bleaches every accuracy cell to white. Other scores get a scale per metric.

"*" marks a cell whose paired test of significance.csv is significant after Holm correction in every seed. A variant
whose jobs ran out of memory is a hatched grey "OOM" cell, one whose jobs failed a cross-hatched "failed" cell, never
a value; a cell the study did not run stays blank.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kvstudy.plots._common import as_bool, lost_variants, prepare, require_columns, require_rows, scored, task_order
from kvstudy.plots._heatmap import ROW_INCH, heat_axes, label_inches, label_rows, lost_cell, variant_rows
from kvstudy.plots.style import length_label, metric_label, new_figure, task_label
from kvstudy.plots.tables import lower_is_better

NAME = "delta_heatmap"
CMAP = "RdBu"
_CELL = ["model", "length", "press", "task"]
COL_INCH = 0.8  # a task column: room for "+0.12*" or "x1.05*" at 9 pt
RATIO_SPAN = 2.0  # the ratio scale runs from x1/100 to x100


def _deltas(results: pd.DataFrame, significance: pd.DataFrame) -> pd.DataFrame:
    """Per (model, length, press, task): the mean over seeds of the signed difference and of the ratio to the
    no_press score, and whether every seed's paired test is significant."""
    ok = scored(results)
    ok = ok.assign(_sign=np.where(lower_is_better(ok), -1.0, 1.0))
    per_seed = ok.groupby([*_CELL, "seed"]).agg(score=("score", "mean"), sign=("_sign", "first")).reset_index()
    base = per_seed[per_seed["press"] == "no_press"].set_index(["model", "length", "task", "seed"])["score"]
    var = per_seed[per_seed["press"] != "no_press"].join(base.rename("base"), on=["model", "length", "task", "seed"])
    var = var.dropna(subset=["base"]).assign(delta=lambda d: (d["score"] - d["base"]) * d["sign"],
                                             ratio=lambda d: d["score"] / d["base"])
    cells = var.groupby(_CELL).agg(delta=("delta", "mean"), ratio=("ratio", "mean")).reset_index()
    sig = pd.Series(dtype=bool)
    if significance is not None and len(significance):
        require_columns(significance, NAME, "significance", ["task", "length", "press", "significant"])
        s = prepare(significance, NAME, "significance").assign(task=lambda d: d["task"].astype(str))
        sig = as_bool(s["significant"]).groupby([s[k] for k in _CELL]).all()
    return cells.assign(sig=[bool(sig.get(k, False)) for k in zip(*(cells[c] for c in _CELL))])


def scale_groups(ok: pd.DataFrame, tasks: list[str]) -> list[tuple[str, list[str]]]:
    """[(kind, tasks)]: "diff" for scores in [0, 1], "ratio" for other lower-is-better scores that are all
    positive (perplexity), "diff:<metric>" for any other metric; tasks in their order within each kind."""
    out: dict[str, list[str]] = {}
    for task in tasks:
        g = ok[ok["task"] == task]
        metric = str(g["metric"].dropna().iloc[0]) if "metric" in g and g["metric"].notna().any() else ""
        if g["score"].between(0, 1).all():
            kind = "diff"  # an accuracy, or an error rate (signed)
        elif lower_is_better(g).all() and (g["score"] > 0).all():
            kind = "ratio"
        else:
            kind = f"diff:{metric}"
        out.setdefault(kind, []).append(task)
    return list(out.items())


def _norm(kind: str, values: np.ndarray):
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    values = values[np.isfinite(values)]
    if kind == "ratio":  # symmetric in log around x1 (x4 as dark as x1/4), saturated beyond x100: the cells say
        span = float(np.max(np.abs(np.log10(values)))) if len(values) else 1.0  # the value; x1.3 stays visible
        span = min(max(span, 0.05), RATIO_SPAN)
        return LogNorm(10 ** -span, 10 ** span, clip=True)
    lim = float(np.max(np.abs(values))) if len(values) else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-(lim or 1.0), vmax=lim or 1.0)


def cell_text(kind: str, value: float) -> str:
    """"+0.12", "x1.05", "x430", "x1e13": short enough for a 0.8-inch cell."""
    if kind != "ratio":
        return f"{value:+.2f}"
    if value >= 1000 or value < 0.01:
        return f"×1e{math.floor(math.log10(value))}"
    return f"×{value:.2f}" if value < 10 else f"×{value:.0f}"


def _panel(ax, kind, tasks, rows, lookup, lost, norm, key):
    col = "ratio" if kind == "ratio" else "delta"
    data = np.full((len(rows), len(tasks)), np.nan)
    for i, (press, _, _) in enumerate(rows):
        for j, task in enumerate(tasks):
            cell = lookup.get((*key, press, task))
            status = lost.get((*key, press, task))
            if cell is not None:
                data[i, j] = cell[col]
                shade = norm(data[i, j])
                ax.text(j + 0.5, i + 0.5, cell_text(kind, data[i, j]) + ("*" if cell["sig"] else ""), ha="center",
                        va="center", fontsize=9, color="white" if abs(shade - 0.5) > 0.3 else "black")
            elif status:
                lost_cell(ax, j, i, status)
    cmap = CMAP if kind != "ratio" else CMAP + "_r"  # ratio: above x1 is worse (red)
    mesh = ax.pcolormesh(np.arange(len(tasks) + 1), np.arange(len(rows) + 1), np.ma.masked_invalid(data),
                         cmap=cmap, norm=norm, edgecolors="white", linewidth=0.5)
    heat_axes(ax)
    ax.set_ylim(len(rows), 0)
    names = [task_label(t) for t in tasks]
    long = any(len(n) > 12 for n in names)  # wider than its 0.8-inch column: slanted
    ax.set_xticks(np.arange(len(tasks)) + 0.5, names, rotation=30 if long else 0, ha="right" if long else "center")
    return mesh


def _scale_label(kind: str, ok: pd.DataFrame, tasks: list[str]) -> str:
    metrics = ok.loc[ok["task"].isin(tasks), "metric"].dropna().unique() if "metric" in ok else []
    name = metric_label(metrics[0]) if len(metrics) == 1 else "Score"
    if kind == "ratio":
        return f"{name}: variant / no press\n(log scale; below 1 = better)"
    return f"Δ {name[0].lower() + name[1:]}\n(positive = better)"


def _layout(panels, groups, rows):
    """The figure, {(panel, group): (axes, labelled)} and the subfigure of the colour bars. One model with one colour scale: its lengths side by
    side, three to a row. Otherwise a row per context length and, per model, a column per colour scale."""
    models = list(dict.fromkeys(m for m, _ in panels))
    lengths = sorted({n for _, n in panels})
    one = len(groups) == 1 and len(models) == 1
    ncols = min(len(panels), 3) if one else len(models) * len(groups)
    nrows = -(-len(panels) // ncols) if one else len(lengths)
    task_cols = [len(groups[0][1])] * ncols if one else [len(t) for _, t in groups] * len(models)
    height = (ROW_INCH * 1.2 * len(rows) + 0.9) * nrows + 0.4
    fig = new_figure(label_inches(r[1] for r in rows) + sum(COL_INCH * n + 0.25 for n in task_cols), height + 1.0)
    top, bars = fig.subfigures(2, 1, height_ratios=[height, 1.0])
    axes = top.subplots(nrows, ncols, squeeze=False, width_ratios=task_cols)
    for g in range(len(groups)):  # a colour bar per scale, side by side under the panels
        bars.add_subplot(1, 2 * len(groups) + 1, 2 * g + 2)
    slots, used = {}, set()
    for p, (model, length) in enumerate(panels):
        for g in range(len(groups)):
            r, c = divmod(p, ncols) if one else (lengths.index(length), models.index(model) * len(groups) + g)
            slots[p, g] = (axes[r, c], c == 0)
            used.add((r, c))
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.remove()
    return fig, slots, bars


def build(tables):
    results = require_rows(tables.get("results"), NAME, "results")
    require_columns(results, NAME, "results", ["task", "length", "press", "score", "status"])
    results = prepare(results, NAME, "results")
    cells = _deltas(results, tables.get("significance"))
    lost = lost_variants(results, NAME)
    lost = lost[lost["method"] != "no_press"]
    every = pd.concat([results.loc[results["press"].isin(cells["press"])], lost], ignore_index=True)
    if every.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no variant with a no_press job in its cell to compare")
    rows = variant_rows(every[every["method"] != "no_press"])
    panels = list(dict.fromkeys(zip(every["model"], every["length"])))
    groups = scale_groups(scored(results), task_order(every["task"]))
    lookup = cells.set_index(_CELL)[["delta", "ratio", "sig"]].to_dict("index")
    lost_at = dict(zip(zip(*(lost[c] for c in _CELL)), lost["status"]))
    fig, slots, bars = _layout(panels, groups, rows)
    many = len({m for m, _ in panels}) > 1
    for g, (kind, tasks) in enumerate(groups):
        norm = _norm(kind, cells.loc[cells["task"].isin(tasks), "ratio" if kind == "ratio" else "delta"].to_numpy())
        for p, key in enumerate(panels):
            ax, first = slots[p, g]
            mesh = _panel(ax, kind, tasks, rows, lookup, lost_at, norm, key)
            label_rows(ax, rows, show=first)
            if g == 0:  # one title over the model's columns
                ax.set_title(f"{key[0]} · {length_label(key[1])} tokens" if many else f"{length_label(key[1])} tokens",
                             loc="left" if len(groups) > 1 else "center")
        cbar = bars.colorbar(mesh, cax=bars.axes[g], orientation="horizontal",
                             extend="both" if kind == "ratio" else "neither")
        cbar.set_label(_scale_label(kind, results, tasks))
    fig.suptitle("Change against no press (* significant after Holm, every seed)")
    return fig
