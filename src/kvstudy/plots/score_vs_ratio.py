"""Score vs compression ratio: one panel per task (columns) x context length (rows), one line per method.

Scores are means over seeds (a band of +-1 s.d. where there are several seeds). The no-press score is drawn as a
dashed horizontal reference in each panel and as the ratio-0 point of every method's line, so each curve starts
from the uncompressed baseline.

A variant whose jobs all ran out of GPU memory (status "oom") has no score: it is drawn in an "OOM" strip below
the score axis, as its method's marker crossed out in red, and its method's line is broken there (never joined
through it). No press out of memory: no reference line in that panel, its crossed-out marker at ratio 0. A
variant whose jobs failed (status "failed") is drawn the same way with a black cross, labelled "failed".

Decoding presses (which evict while generating) sit at the fraction of the cache they really evicted by the end
(results.csv `effective_ratio`), not at their nominal ratio. Quantized variants (`int4`, `knorm-cr0.50+int4`) sit
at the fraction of KV memory they save (1 - `kv_bytes_held` / `kv_bytes_reference`), not at "ratio 0", which
would read as uncompressed.

Each panel has its own score axis, with its own tick labels: scores in [0, 1] on 0-1; a lower-is-better positive
score (perplexity) on a logarithmic axis in its natural direction (lower is better, said in the axis label), so a
perplexity that blows up to 1e13 neither flattens the others nor gets absurd ticks; other scores on their own
linear range. A non-0-1 axis spans its own panel's values, not its task's: one model's perplexities (a random
model's 591-611) are not flattened by another's (the tiny model's 1e7-1e13).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    cross_out,
    families,
    family_labels,
    family_linestyles,
    family_rank,
    memory_ratio,
    lost_handle,
    lost_legend_handles,
    lost_variants,
    panel_title,
    prepare,
    require_columns,
    require_rows,
    row_keys,
    scored,
    task_order,
)
from kvstudy.plots.press_style import is_quantized
from kvstudy.plots.style import metric_label, method_color, method_marker, new_figure
from kvstudy.plots.tables import lower_is_better

NAME = "score_vs_ratio"
KEYS = ["model", "task", "length", "method", "family", "compression_ratio"]
# the OOM strip below the scores, in fractions of the panel's height: its extent, its centre
STRIP, STRIP_Y = 0.17, 0.075
OOM_SPACING, OOM_MIN_SPACING = 0.07, 0.05  # ratio units between crossed-out markers that share a ratio
OOM_ROW_DY = 0.035  # half the distance between the strip's two rows (panel fraction), when one is not enough


def _marker_style(color: str, hollow: bool) -> dict:
    """A method's first variant: filled markers; its other parameter variants: hollow ones."""
    if hollow:
        return {"markerfacecolor": "white", "markeredgecolor": color, "markeredgewidth": 1.3}
    return {"markerfacecolor": color, "markeredgecolor": "white", "markeredgewidth": 0.5}


def _segments(points: pd.DataFrame, oom_ratios) -> list[pd.DataFrame]:
    """Split a line's points (sorted by ratio) wherever an OOM ratio lies between two neighbours."""
    out, start = [], 0
    x = points["compression_ratio"].to_numpy(float)
    for i in range(1, len(points) + 1):
        if i == len(points) or any(x[i - 1] < o < x[i] for o in oom_ratios):
            out.append(points.iloc[start:i])
            start = i
    return out


def _oom_positions(ratio: float, n: int, oom_ratios) -> list[tuple[float, float]]:
    """(x, y as a fraction of the panel's height) of `n` crossed-out markers sharing `ratio` in the OOM strip: side by side, OOM_SPACING apart or
    closer so as to stay clear of the next OOM ratio's markers; in two rows when one row would crowd them."""
    others = [abs(o - ratio) for o in oom_ratios if not np.isclose(o, ratio)]
    half = 0.45 * min(others) if others else 0.5  # half the width this ratio's markers may take
    per_row = max(1, int(2 * half / OOM_MIN_SPACING) + 1)
    n_rows = 1 if n <= per_row else 2
    rows = [list(range(n))] if n_rows == 1 else [list(range(0, n, 2)), list(range(1, n, 2))]
    ys = [STRIP_Y] if n_rows == 1 else [STRIP_Y + OOM_ROW_DY, STRIP_Y - OOM_ROW_DY]
    out: list[tuple[float, float]] = [(0.0, 0.0)] * n
    for members, y in zip(rows, ys):
        k = len(members)
        step = OOM_SPACING if k <= 1 else min(OOM_SPACING, 2 * half / (k - 1))
        for i, m in enumerate(members):
            out[m] = (ratio + (i - (k - 1) / 2) * step, y)
    return out


def _draw_oom(ax, items, hollow_of, to_y):
    """Crossed-out markers in the strip: `items` = [(ratio, method, family, status)]; `to_y`: panel fraction ->
    data y."""
    by_ratio: dict[float, list] = {}
    for ratio, method, fam, status in items:
        by_ratio.setdefault(float(ratio), []).append((method, fam, status))
    for ratio, members in sorted(by_ratio.items()):
        for (x, y), (method, fam, status) in zip(_oom_positions(ratio, len(members), list(by_ratio)), members):
            cross_out(ax, x, to_y(y), status, method_color(method), method_marker(method), hollow_of(fam), fam)


def with_task_mean(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus rows of task "mean": per (model, length, press, seed), the mean score over the higher-is-better
    tasks that (model, length) ran, for variants scored on every one of them; a variant out of memory (or failed)
    on any of them and never complete is an "oom" ("failed") row of the mean (it has no mean). A (model, length)
    that ran fewer than two of those tasks (a hole in the grid) has no mean."""
    good = df[~lower_is_better(df)]
    if good["task"].astype(str).nunique() < 2:
        return df
    keys = ["model", "length", "press"]
    row_tasks = good.groupby(["model", "length"])["task"].nunique().rename("row_tasks")
    good = good.join(row_tasks, on=["model", "length"])
    good = good[good["row_tasks"] >= 2]
    ok = scored(good)
    per = ok.groupby([*keys, "seed"], sort=False).agg(
        score=("score", "mean"), n_tasks=("task", "nunique"), row_tasks=("row_tasks", "first"),
        method=("method", "first"), family=("family", "first"),
        compression_ratio=("compression_ratio", "mean")).reset_index()
    mean = per[per["n_tasks"] == per["row_tasks"]].drop(columns=["n_tasks", "row_tasks"]).assign(task="mean",
                                                                                               status="ok")
    metrics = good["metric"].dropna().unique() if "metric" in good.columns else []
    mean["metric"] = metrics[0] if len(metrics) == 1 else None
    oom = lost_variants(good.drop(columns="row_tasks"), NAME)
    complete = set(zip(mean["model"], mean["length"], mean["press"]))
    oom = oom[np.array([k not in complete for k in zip(oom["model"], oom["length"], oom["press"])], dtype=bool)]
    oom = oom.sort_values("status").drop_duplicates(keys).assign(task="mean", score=np.nan)  # failed wins
    return pd.concat([df, mean, oom.drop(columns=[c for c in oom.columns if c not in df.columns and c != "task"])],
                     ignore_index=True)




def axis_kind(scores: pd.Series, lower: pd.Series) -> str:
    """"unit" (every score in [0, 1]), "log" (lower is better and every score positive: perplexity) or "linear"."""
    if scores.between(0, 1).all():
        return "unit"
    return "log" if lower.all() and (scores > 0).all() else "linear"


def _limits(ax, kind: str, lo: float, hi: float, show_oom: bool):
    """Set the score axis of a panel; returns panel fraction -> data y (the strip's coordinates)."""
    log = kind == "log"
    f, inv = (np.log10, lambda v: 10.0 ** v) if log else ((lambda v: v), (lambda v: v))
    if kind == "unit":
        a, b = 0.0, 1.02
    else:
        a, b = float(f(lo)), float(f(hi))
        pad = 0.06 * ((b - a) or abs(b) or 1.0)
        a, b = a - pad, b + pad
    if show_oom:  # room under the scores for the strip
        a -= (b - a) * STRIP / (1 - STRIP)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(inv(a), inv(b))
    return lambda frac: inv(a + frac * (b - a))


def _tick_text(v: float, decades: bool = False) -> str:
    """"0.5", "120", "10^13" (every tick of a decades-only log axis, so they read alike) or "2x10^7" (a 1-2-5 tick
    of a large value: rounding it to its decade would label 2e7 and 5e7 both 10^7)."""
    if not decades and (v == 0 or 1e-3 <= abs(v) < 1e4):
        return f"{v:g}"
    exp = int(np.floor(np.log10(abs(v)) + 1e-9))
    mantissa = v / 10.0 ** exp
    if decades or np.isclose(mantissa, 1.0):
        return f"$10^{{{int(round(np.log10(abs(v))))}}}$"
    return f"${mantissa:g}\\times10^{{{exp}}}$"


def _ticks(ax, kind: str, to_y, strip_label: str | None) -> None:
    """Score ticks (0-1 in fifths; decades or 1-2-5 on a log axis), and the strip's label where it is shown."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

    lo, hi = to_y(STRIP if strip_label else 0.0), to_y(1.0)
    subs = None
    if kind == "unit":
        ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    elif kind == "log" and hi / lo < 10:  # inside one decade: a few plain ticks (a log locator gives nine)
        ticks = [t for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
    elif kind == "log":
        subs = (1.0,) if hi / lo > 1e4 else (1.0, 2.0, 5.0)
        ticks = [t for t in LogLocator(subs=subs, numticks=8).tick_values(lo, hi) if lo <= t <= hi]
    else:
        ticks = [t for t in MaxNLocator(5).tick_values(lo, hi) if lo <= t <= hi]
    decades = kind == "log" and subs == (1.0,)
    labels = [f"{t:.1f}" if kind == "unit" else _tick_text(t, decades) for t in ticks]
    if strip_label:
        ticks, labels = [to_y(STRIP_Y), *ticks], [strip_label, *labels]
    ax.set_yticks(ticks, labels)
    ax.yaxis.set_minor_locator(NullLocator())


def _line(ax, fam_points, baseline, fam_oom, color, style, marker_style, fam, band_clip):
    """A family's line from the baseline (ratio 0) through its ratios, broken at each OOM ratio."""
    line = fam_points.sort_values("compression_ratio")
    if (line["compression_ratio"] <= 0).all():  # no ratio and no bytes to place it by: a marker at 0, smaller
        ax.plot([0.0], [float(line["mean"].mean())], ls="none", zorder=4.5, clip_on=False, gid=f"score:{fam}",
                **{**marker_style, "markersize": 4.5})  # than the no-press dot, so both show when equal
        return
    if baseline is not None:
        start = pd.DataFrame({"compression_ratio": [0.0], "mean": [baseline], "std": [0.0], "count": [1]})
        line = pd.concat([start, line[start.columns]], ignore_index=True)
    for seg in _segments(line, fam_oom):
        from_base = baseline is not None and float(seg["compression_ratio"].iloc[0]) == 0.0
        if from_base and len(seg) == 1:
            continue  # the baseline alone: its own marker is drawn by the panel
        x, y = seg["compression_ratio"].to_numpy(float), seg["mean"].to_numpy(float)
        sd = seg["std"].fillna(0.0).to_numpy(float)
        ax.plot(x, y, color=color, ls=style, markevery=slice(1 if from_base else 0, None), zorder=3, clip_on=False,
                gid=f"score:{fam}", **marker_style)
        if (seg["count"] > 1).any():
            low, high = (np.clip(y - sd, 0, 1), np.clip(y + sd, 0, 1)) if band_clip else (y - sd, y + sd)
            ax.fill_between(x, low, high, color=color, alpha=0.1, lw=0, zorder=2)


def _panel(ax, panel, panel_oom, fams, ctx) -> tuple[bool, set]:
    """One (task, model, length) panel: the baseline, a line per family, OOM / failed marks; returns whether the
    baseline was drawn and the kinds of lost variants drawn."""
    from matplotlib.lines import Line2D

    base = panel.loc[panel["method"] == "no_press", "mean"]
    baseline = float(base.mean()) if len(base) else None
    if baseline is not None:
        ax.axhline(baseline, color=method_color("no_press"), ls="--", lw=1.0, zorder=1)
    items = []
    for method, fam in fams:
        color = method_color(method)
        marker_style = dict(marker=method_marker(method), **_marker_style(color, ctx["ranks"][fam] > 0))
        gone = panel_oom[panel_oom["family"] == fam]
        fam_oom = sorted(gone["compression_ratio"].astype(float))
        items += [(r, method, fam, st) for r, st in sorted(zip(gone["compression_ratio"].astype(float),
                                                                 gone["status"]))]
        points = panel[panel["family"] == fam]
        if method == "no_press" or (points.empty and not fam_oom):
            continue
        if not points.empty:
            _line(ax, points, baseline, fam_oom, color, ctx["styles"][fam], marker_style, fam, ctx["kind"] == "unit")
        ctx["used"].setdefault(ctx["labels"][fam], Line2D([], [], color=color, ls=ctx["styles"][fam],
                                                          **marker_style))
    if baseline is not None:
        ax.plot([0.0], [baseline], ls="none", marker=method_marker("no_press"), color=method_color("no_press"),
                markeredgecolor="white", markeredgewidth=0.5, zorder=4, clip_on=False)
    if ctx["show_oom"]:  # the strip in every panel, so that an empty one reads "nothing ran out of memory"
        ax.axhspan(ctx["to_y"](0.0), ctx["to_y"](STRIP * 0.85), facecolor="0.95", edgecolor="none", zorder=1.6)
    if items:
        _draw_oom(ax, items, lambda f: ctx["ranks"][f] > 0, ctx["to_y"])
    return baseline is not None, {st for *_, st in items}


def _y_label(kind: str, metric: str | None) -> str:
    name = metric_label(metric)
    return f"{name} (log)\nlower is better" if kind == "log" else name


def _prepared(tables, average):
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score"])
    df = memory_ratio(prepare(df, NAME, "results", measured=True))
    df = with_task_mean(df) if average else df
    oom = lost_variants(df, NAME)
    ok = scored(df)
    if ok.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no job with status 'ok' and a score")
    agg = ok.groupby(KEYS, sort=False)["score"].agg(["mean", "std", "count"]).reset_index()
    oom = oom[[*KEYS, "status"]].drop_duplicates(KEYS)
    if not ((agg["method"] != "no_press").any() or (oom["method"] != "no_press").any()):
        raise ValueError(f"figure {NAME!r}: results.csv has only no_press jobs, no compressed variant to plot")
    kinds, metrics = {}, {}
    for task, g in ok.groupby("task", sort=False):
        kinds[task] = axis_kind(g["score"], lower_is_better(g))
        found = g["metric"].dropna().unique() if "metric" in g.columns else []
        metrics[task] = str(found[0]) if len(found) == 1 else None
    return agg, oom, kinds, metrics


def _legend(fig, fams, labels, used, baseline_drawn, oom, drawn):
    from matplotlib.lines import Line2D

    handles = []
    if baseline_drawn or (oom["method"] == "no_press").any():
        handles.append(("No press", Line2D([], [], color=method_color("no_press"), ls="--", lw=1.0,
                                           marker=method_marker("no_press"), markeredgecolor="white")))
    handles += [(labels[fam], used[labels[fam]]) for _, fam in fams if labels[fam] in used]
    handles += lost_legend_handles(drawn, lost_handle)
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")


def build(tables, average=False):
    agg, oom, kinds, metrics = _prepared(tables, average)
    every = pd.concat([agg[KEYS], oom[KEYS]], ignore_index=True)
    tasks, rows, fams = task_order(every["task"]), row_keys(every), families(every)
    many_models, one_label = every["model"].nunique() > 1, len({(kinds.get(t), metrics.get(t)) for t in tasks}) == 1
    strip = " / ".join(CELL_TEXT[s] for s in ("oom", "failed") if s in set(oom["status"])) or None
    ctx = dict(labels=family_labels(fams), styles=family_linestyles(fams), ranks=family_rank(fams), used={},
               show_oom=not oom.empty)
    fig = new_figure(2.9 * len(tasks) + 2.0, 2.3 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), len(tasks), sharex=True, squeeze=False)
    baseline_drawn, drawn = False, set()
    for (r, (model, length)), (c, task) in itertools.product(enumerate(rows), enumerate(tasks)):
        ax, where = axes[r, c], lambda t: (t["model"] == model) & (t["task"] == task) & (t["length"] == length)
        panel, panel_oom = agg[where(agg)], oom[where(oom)]
        if not (panel["method"] != "no_press").any() and panel_oom.empty:
            ax.remove()
            continue
        # a panel's own range (models' perplexities differ by decades); its task's where it has no score
        span = panel["mean"] if panel["mean"].notna().any() else agg.loc[agg["task"] == task, "mean"]
        ctx.update(kind=kinds.get(task, "unit"), to_y=_limits(ax, kinds.get(task, "unit"), span.min(), span.max(),
                                                               ctx["show_oom"]))
        has_base, lost = _panel(ax, panel, panel_oom, fams, ctx)
        baseline_drawn, drawn = baseline_drawn or has_base, drawn | lost
        _ticks(ax, ctx["kind"], ctx["to_y"], strip)
        ax.set_title(panel_title(task, model, length, many_models))
        ax.set_ylabel("" if one_label else _y_label(ctx["kind"], metrics.get(task)))
        ax.set_xlim(-0.03, 1.0)
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0], ["0", "0.25", "0.5", "0.75", "1"])
        ax.tick_params(labelbottom=True, labelleft=True)
    if not fig.axes:
        raise ValueError(f"figure {NAME!r}: no (task, length) panel has a compressed variant with a score")
    quantized = any(is_quantized(m, f) for m, f in fams)
    fig.supxlabel("Compression ratio" + ("  (quantized: fraction of KV memory saved)" if quantized else ""))
    if one_label:
        fig.supylabel(_y_label(kinds[tasks[0]], metrics.get(tasks[0])) if tasks[0] in kinds else "Score")
    _legend(fig, fams, ctx["labels"], ctx["used"], baseline_drawn, oom, drawn)
    return fig
