"""The body of the Pareto figures (pareto_memory, pareto_latency): score against a cost of pareto.csv, one panel
per task x (model, length), the front as a step line, ratio labels and OOM notes placed by kvstudy.plots._placement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    as_bool,
    families,
    family_labels,
    family_rank,
    lost_variants,
    panel_title,
    prepare,
    require_columns,
    require_rows,
    row_keys,
    task_order,
)
from kvstudy.plots._placement import clusters, place_labels_and_notes
from kvstudy.plots.press_style import family_suffix
from kvstudy.plots.press_style import style as press_style
from kvstudy.plots.style import method_color, method_marker, method_order, new_figure, ratio_label
from kvstudy.plots.tables import lower_is_better

FRONT_COLOR = "0.35"


def _oom_panels(results, tasks, pareto, name) -> pd.DataFrame:
    """OOM variants per (model, task, length) panel; for the task mean, those that ran out of memory on any task
    (pareto.csv has no mean for them). Variants present in pareto.csv are left out (they have a score there)."""
    oom = lost_variants(results, name)
    if oom.empty:
        return oom
    if "mean" in tasks:  # failed wins over oom where a variant has both
        mean = oom.sort_values("status").drop_duplicates(["model", "length", "press"]).assign(task="mean")
        oom = pd.concat([oom, mean], ignore_index=True)
    oom = oom[oom["task"].isin(tasks)]
    have = set(zip(pareto["model"], pareto["task"].astype(str), pareto["length"], pareto["press"]))
    keep = [k not in have for k in zip(oom["model"], oom["task"], oom["length"], oom["press"])]
    return oom[np.array(keep, dtype=bool)].reset_index(drop=True)


def oom_note(panel_oom, labels) -> list[str]:
    """The parts of a panel's note, ["No press", "TOVA 0.25, 0.50"]: methods in the fixed order, ratios
    ascending."""
    parts = []
    for method in method_order(panel_oom["method"].unique()):
        sub = panel_oom[panel_oom["method"] == method]
        for fam in sorted(sub["family"].unique()):
            label = labels.get(fam, fam)
            if method == "no_press":
                parts.append(label)
            else:
                ratios = sorted(sub.loc[sub["family"] == fam, "compression_ratio"].astype(float).unique())
                parts.append(f"{label} {', '.join(ratio_label(r) for r in ratios)}")
    return parts


def note_groups(panel_oom, labels) -> list[tuple[str, list[str]]]:
    """[("OOM:", parts), ("failed:", parts)] for the kinds of lost variants in a panel (see `oom_note`)."""
    return [(f"{CELL_TEXT[s]}:", oom_note(panel_oom[panel_oom["status"] == s], labels))
            for s in ("oom", "failed") if (panel_oom["status"] == s).any()]


def point_tag(method: str, press: str, ratio: float) -> str:
    """The label by a point: its ratio ("0.50"), a quantized cache "int4", an evicted and quantized one
    "0.50+int4"; none for no press (the full cache, the rightmost point)."""
    st = press_style(method)
    quant = family_suffix(press)[0]
    if method == "no_press":
        return ""
    if not st.has_ratio:
        return st.quantization or ""
    return ratio_label(ratio) + (f"+{quant}" if quant else "")


def _points(tables, name, x_column, front_column, bounds):
    """pareto.csv as the panels read it: `x`, `x_low`, `x_high`, `front`, `tag`; the tasks to draw."""
    df = require_rows(tables.get("pareto"), name, "pareto")
    require_columns(df, name, "pareto", ["task", "length", "score", x_column, front_column])
    df = prepare(df.drop(columns=[c for c in ("x", "front") if c in df.columns]), name, "pareto", measured=True)
    df = df.rename(columns={x_column: "x", front_column: "front"})
    df["x"] = pd.to_numeric(df["x"], errors="coerce")
    have_bounds = bounds is not None and all(b in df.columns for b in bounds)
    for key, col in zip(("x_low", "x_high"), bounds if have_bounds else ("x", "x")):
        df[key] = pd.to_numeric(df[col], errors="coerce").fillna(df["x"])
    df = df[df["score"].notna() & df["x"].notna() & (df["x"] > 0)].copy()
    if df.empty:
        raise ValueError(f"figure {name!r}: pareto.csv has no row with both a score and {x_column}")
    df["front"] = as_bool(df["front"])
    df["tag"] = [point_tag(m, p, r) for m, p, r in zip(df["method"], df["press"], df["compression_ratio"])]
    tasks = task_order(df["task"])
    task_rows = df[df["task"] != "mean"]
    if "mean" in tasks and task_rows.loc[~lower_is_better(task_rows), "task"].nunique() < 2:
        tasks = [t for t in tasks if t != "mean"]  # a mean over one higher-is-better task is that task again
        df = df[df["task"] != "mean"]
    return df, tasks, have_bounds


def _score_axis(ax, panel, unit_score: bool, lower: bool) -> None:
    """0-1 for scores in [0, 1]; a lower-is-better score inverted (up is better in every panel), on a log axis
    where it is positive and spans more than a factor 10 (perplexity)."""
    if unit_score:
        ax.set_ylim(0.0, 1.16)
        ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    elif len(panel):
        lo, hi = float(panel["score"].min()), float(panel["score"].max())
        if lower and lo > 0 and hi > 10 * lo:
            ax.set_yscale("log")
            span = np.log10(hi / lo)
            ax.set_ylim(lo / 10 ** (0.1 * span), hi * 10 ** (0.16 * span))
        else:
            pad = 0.1 * ((hi - lo) or abs(hi) or 1.0)
            ax.set_ylim(lo - pad, hi + 1.6 * pad)
    if lower:
        ax.invert_yaxis()
        ax.set_ylabel("lower is better (up)" if ax.get_yscale() == "linear" else "log, lower is better (up)")
    ax.tick_params(labelleft=True)


def _x_axis(ax, lo: float, hi: float, log: bool) -> float:
    """The row's cost axis (log base 2 where it spans more than 10x); returns its right limit."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    right = hi * 1.25 if log else hi * 1.1
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(lo / 1.25, right)
    else:
        ax.set_xlim(0.0, right)
    return right


def _draw_points(ax, panel, fams, ctx, right) -> bool:
    """The front's staircase and every family's points (with their interval); returns whether a front was drawn."""
    from matplotlib.lines import Line2D

    scale = ctx["scale"]
    front = panel[panel["front"]].sort_values(["x", "score"])
    if len(front):  # the staircase runs on to the right edge: more cost than the front's last point buys nothing
        ax.plot(np.r_[front["x"].to_numpy(float) / scale, right],
                np.r_[front["score"].to_numpy(float), front["score"].iloc[-1]], drawstyle="steps-post",
                color=FRONT_COLOR, lw=1.2, zorder=2)
    for method, fam in fams:
        pts = panel[panel["family"] == fam]
        if pts.empty:
            continue
        color, marker = method_color(method), method_marker(method)
        face, edge, width = ("white", color, 1.3) if ctx["hollow"][fam] else (color, "white", 0.5)
        if ctx["bounds"]:  # the interval of the measure (pareto_latency: the timing protocol's)
            ax.errorbar((pts["x"] / scale).to_numpy(float), pts["score"].to_numpy(float),
                        xerr=[((pts["x"] - pts["x_low"]) / scale).to_numpy(float),
                              ((pts["x_high"] - pts["x"]) / scale).to_numpy(float)],
                        fmt="none", ecolor=color, elinewidth=0.9, capsize=2, alpha=0.75, zorder=2.5,
                        gid=f"interval:{fam}")
        ax.scatter(pts["x"] / scale, pts["score"], s=38, marker=marker, facecolors=face, edgecolors=edge,
                   linewidths=width, zorder=3, clip_on=False)
        ctx["used"].setdefault(ctx["labels"][fam], Line2D([], [], ls="none", marker=marker, markerfacecolor=face,
                                                          markeredgecolor=edge, markeredgewidth=width,
                                                          markersize=7, color=color))
    return bool(len(front))


def _row(axes_row, in_row, oom_row, tasks, fams, ctx, title) -> bool:
    """One (model, length) row of panels; returns whether a front was drawn."""
    scale, drawn, first = ctx["scale"], False, None
    lo, hi = ((float(in_row["x_low"].min()) / scale, float(in_row["x_high"].max()) / scale) if len(in_row)
              else (0.0, 1.0))  # every variant of the row out of memory: panels with their note only
    for ax, task in zip(axes_row, tasks):
        panel, panel_oom = in_row[in_row["task"] == task], oom_row[oom_row["task"] == task]
        if panel.empty and panel_oom.empty:
            ax.remove()
            continue
        if first is None:
            first = ax
        elif len(in_row):
            ax.sharex(first)
        if not panel_oom.empty:
            ctx["notes"].append((ax, panel, note_groups(panel_oom, ctx["labels"])))
        ax.set_title(title(task))
        _score_axis(ax, panel, ctx["unit_score"], bool(len(panel)) and ctx["lower"](panel))
        if in_row.empty:
            ax.set_xlim(0.0, 1.0)
            ax.set_xticks([])
            continue
        right = _x_axis(ax, lo, hi, hi > 10 * lo)
        drawn |= _draw_points(ax, panel, fams, ctx, right)
        if len(panel):
            ctx["to_label"].append((ax, panel, [(x / scale, top, bottom, tag) for x, top, bottom, tag
                                                in clusters(panel, ax.get_xscale() == "log")]))
    return drawn


def build_front(tables, name: str, x_column: str, front_column: str, x_unit, x_label: str, front_label: str,
                bounds: tuple[str, str] | None = None, note: str = ""):
    """Score against `x_column` of pareto.csv with the front `front_column`; `x_unit(max) -> (unit, scale)`.
    pareto_latency gives `bounds`, the columns of x's interval (drawn as horizontal bars where present), and a
    `note` under the x label."""
    from matplotlib.lines import Line2D

    df, tasks, have_bounds = _points(tables, name, x_column, front_column, bounds)
    oom = _oom_panels(tables.get("results"), tasks, df, name)
    every = pd.concat([df[["model", "task", "length", "method", "family"]],
                       oom[["model", "task", "length", "method", "family"]]], ignore_index=True)
    rows, fams, many = row_keys(every), families(every), every["model"].nunique() > 1
    ctx = dict(labels=family_labels(fams), hollow={f: r > 0 for f, r in family_rank(fams).items()}, used={},
               scale=x_unit(float(df["x"].max()))[1], bounds=have_bounds, notes=[], to_label=[],
               unit_score=bool(df["score"].between(0, 1).all()), lower=lambda p: bool(lower_is_better(p).all()))
    fig = new_figure(2.9 * len(tasks) + 2.1, 2.4 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), len(tasks), sharey=ctx["unit_score"], squeeze=False)
    front_drawn = False
    for r, (model, length) in enumerate(rows):
        at = lambda t: (t["model"] == model) & (t["length"] == length)  # noqa: E731
        front_drawn |= _row(axes[r], df[at(df)], oom[at(oom)], tasks, fams, ctx,
                            lambda task: panel_title(task, model, length, many))
    if not fig.axes:
        raise ValueError(f"figure {name!r}: no (task, length) panel has a point to plot")
    fig.supxlabel(f"{x_label} ({x_unit(float(df['x'].max()))[0]})" + (f"\n{note}" if note else ""))
    fig.supylabel("Score")
    handles = [(ctx["labels"][f], ctx["used"][ctx["labels"][f]]) for _, f in fams if ctx["labels"][f] in ctx["used"]]
    if front_drawn:
        handles.append((front_label, Line2D([], [], color=FRONT_COLOR, lw=1.2, drawstyle="steps-post")))
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")
    place_labels_and_notes(fig, ctx["to_label"], ctx["notes"], ctx["scale"])  # last: needs the final layout
    return fig
