"""Score vs compression ratio: one panel per task (columns) x context length (rows), one line per method.

Scores are means over seeds (a band of +-1 s.d. where there are several seeds). The no-press score is drawn as a
dashed horizontal reference in each panel and as the ratio-0 point of every method's line, so each curve starts
from the uncompressed baseline.

A variant whose jobs all ran out of GPU memory (status "oom") has no score: it is drawn in an "OOM" strip below
the score axis, as its method's marker crossed out in red, and its method's line is broken there (never joined
through it). No press out of memory: no reference line in that panel, its crossed-out marker at ratio 0. A
variant whose jobs failed (status "failed") is drawn the same way with a black cross, labelled "failed".

Decoding presses (which evict while generating) sit at the fraction of the cache they really evicted by the end
(results.csv `effective_ratio`), not at their nominal ratio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    CROSS_COLOR,
    families,
    family_labels,
    family_linestyles,
    family_rank,
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
from kvstudy.plots.style import metric_label, method_color, method_marker, new_figure

NAME = "score_vs_ratio"
KEYS = ["model", "task", "length", "method", "family", "compression_ratio"]
# the OOM strip below the score axis: its centre, its extent, the lower y limit when it is shown
OOM_Y, OOM_BAND, OOM_YMIN = -0.12, (-0.21, -0.035), -0.21
OOM_SPACING, OOM_MIN_SPACING = 0.07, 0.05  # ratio units between crossed-out markers that share a ratio
OOM_ROW_DY = 0.042  # half the distance between the strip's two rows, when one is not enough


def _marker_style(color: str, hollow: bool) -> dict:
    """A method's first variant: filled markers; its other parameter variants: hollow ones."""
    if hollow:
        return {"markerfacecolor": "white", "markeredgecolor": color, "markeredgewidth": 1.3}
    return {"markerfacecolor": color, "markeredgecolor": "white", "markeredgewidth": 0.5}


def _cross(status: str) -> dict:
    """The cross over a lost variant's marker: red for OOM, black for failed."""
    return dict(marker="x", markersize=8.5, markeredgecolor=CROSS_COLOR[status], markeredgewidth=1.1)


def _oom_marker_style(color: str, marker: str, hollow: bool) -> dict:
    """The method's own marker, a little larger than on its line, under the red cross."""
    return dict(marker=marker, markersize=7, markerfacecolor="white" if hollow else color,
                markeredgecolor=color if hollow else "white", markeredgewidth=1.3 if hollow else 0.5)


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
    """(x, y) of `n` crossed-out markers sharing `ratio` in the OOM strip: side by side, OOM_SPACING apart or
    closer so as to stay clear of the next OOM ratio's markers; in two rows when one row would crowd them."""
    others = [abs(o - ratio) for o in oom_ratios if not np.isclose(o, ratio)]
    half = 0.45 * min(others) if others else 0.5  # half the width this ratio's markers may take
    per_row = max(1, int(2 * half / OOM_MIN_SPACING) + 1)
    n_rows = 1 if n <= per_row else 2
    rows = [list(range(n))] if n_rows == 1 else [list(range(0, n, 2)), list(range(1, n, 2))]
    ys = [OOM_Y] if n_rows == 1 else [OOM_Y + OOM_ROW_DY, OOM_Y - OOM_ROW_DY]
    out: list[tuple[float, float]] = [(0.0, 0.0)] * n
    for members, y in zip(rows, ys):
        k = len(members)
        step = OOM_SPACING if k <= 1 else min(OOM_SPACING, 2 * half / (k - 1))
        for i, m in enumerate(members):
            out[m] = (ratio + (i - (k - 1) / 2) * step, y)
    return out


def _draw_oom(ax, items, color_of, marker_of, hollow_of):
    """Crossed-out markers in the strip: `items` = [(ratio, method, family, status)]."""
    by_ratio: dict[float, list] = {}
    for ratio, method, fam, status in items:
        by_ratio.setdefault(float(ratio), []).append((method, fam, status))
    for ratio, members in sorted(by_ratio.items()):
        for (x, y), (method, fam, status) in zip(_oom_positions(ratio, len(members), list(by_ratio)), members):
            ax.plot([x], [y], ls="none", zorder=5, clip_on=False, gid=f"{status}:{fam}",
                    **_oom_marker_style(color_of(method), marker_of(method), hollow_of(fam)))
            ax.plot([x], [y], ls="none", zorder=6, clip_on=False, gid=f"{status}-cross:{fam}", **_cross(status))


def _oom_legend_handle(status: str = "oom"):
    from matplotlib.lines import Line2D

    return (Line2D([], [], ls="none", **_oom_marker_style("0.45", "o", False)),
            Line2D([], [], ls="none", **_cross(status)))


def with_task_mean(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus rows of task "mean": per (model, length, press, seed), the mean score over the higher-is-better
    tasks that (model, length) ran, for variants scored on every one of them; a variant out of memory (or failed)
    on any of them and never complete is an "oom" ("failed") row of the mean (it has no mean). A (model, length)
    that ran fewer than two of those tasks (a hole in the grid) has no mean."""
    hib = df.get("higher_is_better")
    good = df if hib is None else df[~hib.astype(str).str.strip().str.lower().isin(["false", "0", "0.0"])]
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


def _task_scales(df: pd.DataFrame, agg: pd.DataFrame) -> dict[str, tuple[float, float, bool]]:
    """Where some score lies outside [0, 1]: task -> (low, span, higher_is_better) of its mean scores (+- s.d.),
    so each task is drawn on the usual 0-1 axis (up = better) with its own tick labels. Empty when every score is
    in [0, 1]."""
    if df["score"].between(0, 1).all():
        return {}
    hib = df.get("higher_is_better")
    lower = set(df.loc[hib.astype(str).str.strip().str.lower().isin(["false", "0", "0.0"]), "task"]) \
        if hib is not None else set()
    out = {}
    for task, g in agg.groupby("task"):
        sd = g["std"].fillna(0.0)
        lo, hi = float((g["mean"] - sd).min()), float((g["mean"] + sd).max())
        pad = 0.05 * ((hi - lo) or abs(hi) or 1.0)
        out[task] = (lo - pad, (hi - lo) + 2 * pad, task not in lower)
    return out


def build(tables, average=False):
    from matplotlib.lines import Line2D

    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score"])
    df = prepare(df, NAME, "results", measured=True)
    df["task"] = df["task"].astype(str)
    if average:
        df = with_task_mean(df)
    oom = lost_variants(df, NAME)
    df = scored(df)
    if df.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no job with status 'ok' and a score")

    agg = df.groupby(KEYS, sort=False)["score"].agg(["mean", "std", "count"]).reset_index()
    scales = _task_scales(df, agg)
    if scales:  # scores outside [0, 1] (perplexity): drawn on a 0-1 axis per task, ticks labelled in real units
        for task, (lo, span, up) in scales.items():
            rows = agg["task"] == task
            agg.loc[rows, "mean"] = (agg.loc[rows, "mean"] - lo) / span if up else (lo + span - agg.loc[rows, "mean"]) / span
            agg.loc[rows, "std"] = agg.loc[rows, "std"] / span
    oom = oom[[*KEYS, "status"]].drop_duplicates(KEYS)
    if not ((agg["method"] != "no_press").any() or (oom["method"] != "no_press").any()):
        raise ValueError(f"figure {NAME!r}: results.csv has only no_press jobs, no compressed variant to plot")
    every = pd.concat([agg[KEYS], oom[KEYS]], ignore_index=True)
    strip_label = " / ".join(CELL_TEXT[s] for s in ("oom", "failed") if s in set(oom["status"]))
    drawn: set[str] = set()

    tasks = task_order(every["task"])
    rows = row_keys(every)
    many_models = every["model"].nunique() > 1
    fams = families(every)
    labels = family_labels(fams)
    styles = family_linestyles(fams)
    ranks = family_rank(fams)
    metrics = {}
    if "metric" in df.columns:
        for task in tasks:
            found = df.loc[(df["task"] == task) & df["metric"].notna(), "metric"].unique()
            metrics[task] = str(found[0]) if len(found) == 1 else None
    one_metric = len(set(metrics.values())) <= 1

    ncols, nrows = len(tasks), len(rows)
    fig = new_figure(2.9 * ncols + 2.0, 2.3 * nrows + 0.5)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharex=True, sharey=not scales, squeeze=False))
    used: dict[str, tuple] = {}  # legend label -> handle
    baseline_drawn = False
    show_oom = not oom.empty
    for r, (model, length) in enumerate(rows):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            where = lambda t: (t["model"] == model) & (t["task"] == task) & (t["length"] == length)  # noqa: E731
            panel, panel_oom = agg[where(agg)], oom[where(oom)]
            if not (panel["method"] != "no_press").any() and panel_oom.empty:
                ax.remove()
                continue
            base = panel.loc[panel["method"] == "no_press", "mean"]
            baseline = float(base.mean()) if len(base) else None
            if baseline is not None:
                ax.axhline(baseline, color=method_color("no_press"), ls="--", lw=1.0, zorder=1)
            oom_items = []
            for method, fam in fams:
                color = method_color(method)
                marker_style = dict(marker=method_marker(method), **_marker_style(color, ranks[fam] > 0))
                gone = panel_oom[panel_oom["family"] == fam]
                fam_oom = sorted(gone["compression_ratio"].astype(float))
                oom_items += [(r, method, fam, st) for r, st in sorted(zip(gone["compression_ratio"].astype(float),
                                                                            gone["status"]))]
                if fam_oom and method != "no_press":  # no press has its own legend entry
                    used.setdefault(labels[fam], Line2D([], [], color=color, ls=styles[fam], **marker_style))
                if method == "no_press":
                    continue
                line = panel[panel["family"] == fam].sort_values("compression_ratio")
                at_zero = line[line["compression_ratio"] <= 0]
                line = line[line["compression_ratio"] > 0]
                if line.empty and not at_zero.empty:
                    # evicts no token (int4: quantized cache; a fixed-budget press): one marker at ratio 0
                    # above the no-press dot and smaller, so both show when the scores are equal
                    ax.plot([0.0], [float(at_zero["mean"].mean())], ls="none", zorder=4.5, clip_on=False,
                            gid=f"score:{fam}", **{**marker_style, "markersize": 4.5})
                    used.setdefault(labels[fam], Line2D([], [], ls="none", **marker_style))
                    continue
                if line.empty:
                    continue
                if baseline is not None:
                    start = pd.DataFrame({"compression_ratio": [0.0], "mean": [baseline], "std": [0.0],
                                          "count": [1]})
                    line = pd.concat([start, line[start.columns]], ignore_index=True)
                # an OOM ratio breaks the line: no score is drawn (or interpolated) where the job had none
                for seg in _segments(line, fam_oom):
                    from_base = baseline is not None and float(seg["compression_ratio"].iloc[0]) == 0.0
                    if from_base and len(seg) == 1:
                        continue  # the baseline alone: its own marker is drawn below
                    x = seg["compression_ratio"].to_numpy(float)
                    y = seg["mean"].to_numpy(float)
                    sd = seg["std"].fillna(0.0).to_numpy(float)
                    ax.plot(x, y, color=color, ls=styles[fam], markevery=slice(1 if from_base else 0, None),
                            zorder=3, clip_on=False, gid=f"score:{fam}", **marker_style)
                    if (seg["count"] > 1).any():
                        ax.fill_between(x, np.clip(y - sd, 0, 1), np.clip(y + sd, 0, 1), color=color, alpha=0.1,
                                        lw=0, zorder=2)
                used.setdefault(labels[fam], Line2D([], [], color=color, ls=styles[fam], **marker_style))
            if baseline is not None:
                ax.plot([0.0], [baseline], ls="none", marker=method_marker("no_press"),
                        color=method_color("no_press"), markeredgecolor="white", markeredgewidth=0.5, zorder=4,
                        clip_on=False)
                baseline_drawn = True
            if show_oom:  # the strip in every panel, so that an empty one reads "nothing ran out of memory"
                ax.axhspan(*OOM_BAND, facecolor="0.95", edgecolor="none", zorder=1.6)
            if oom_items:
                _draw_oom(ax, oom_items, method_color, method_marker, lambda f: ranks[f] > 0)
                drawn.update(st for *_, st in oom_items)
            title = panel_title(task, model, length, many_models)
            if not one_metric and metrics.get(task):
                ax.set_ylabel(metric_label(metrics[task]))
            ax.set_title(title)
            ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
            tick_labels = [f"{t:.1f}" for t in ticks]
            if task in scales:  # the real values at the ticks; lower-is-better scores run downwards
                lo, span, up = scales[task]
                tick_labels = [f"{(lo + t * span) if up else (lo + span - t * span):.3g}" for t in ticks]
            if show_oom:
                ax.set_ylim(OOM_YMIN, 1.02)
                ax.set_yticks([OOM_Y, *ticks], [strip_label, *tick_labels])
            else:
                ax.set_ylim(0.0, 1.02)
                ax.set_yticks(ticks, tick_labels)
            ax.set_xlim(-0.03, 1.0)
            ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
            ax.set_xticklabels(["0", "0.25", "0.5", "0.75", "1"])
            ax.tick_params(labelbottom=True, labelleft=True)

    if not fig.axes:
        raise ValueError(f"figure {NAME!r}: no (task, length) panel has a compressed variant with a score")
    fig.supxlabel("Compression ratio")
    fig.supylabel(metric_label(next(iter(metrics.values()), None)) if one_metric else "Score")

    handles = []
    if baseline_drawn or (oom["method"] == "no_press").any():
        handles.append(("No press", Line2D([], [], color=method_color("no_press"), ls="--", lw=1.0,
                                           marker=method_marker("no_press"), markeredgecolor="white")))
    handles += [(labels[fam], used[labels[fam]]) for _, fam in fams if labels[fam] in used]
    handles += lost_legend_handles(drawn, _oom_legend_handle)
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")
    return fig
