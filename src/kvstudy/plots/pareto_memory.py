"""Score vs KV-cache memory (from pareto.csv): one panel per task (columns, the task mean last) x context length
(rows); points coloured and marked by method, the memory Pareto front joined by a step line, points labelled with
their compression ratio.

Press variants with the same ratio keep about the same number of tokens, so they stack at one memory value: such a
stack gets one ratio label (above its top point) instead of one per point.
"""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from kvstudy.plots import Figure, register
from kvstudy.plots._common import (
    as_bool,
    families,
    family_labels,
    family_rank,
    panel_title,
    prepare,
    require_columns,
    require_rows,
    row_keys,
    task_order,
)
from kvstudy.plots.style import (
    byte_unit,
    method_color,
    method_marker,
    new_figure,
    ratio_label,
)

NAME = "pareto_memory"
FRONT_COLOR = "0.35"


def _clusters(panel, log: bool):
    """Groups of points with the same ratio and (within 3 %) the same memory -> (x, top, bottom score, ratio)."""
    out = []
    for ratio, grp in panel.groupby("compression_ratio", sort=True):
        xs = np.sort(grp["kv_bytes"].to_numpy(float))
        start = 0
        for i in range(1, len(xs) + 1):
            if i == len(xs) or xs[i] > xs[start] * 1.03:
                members = grp[(grp["kv_bytes"] >= xs[start]) & (grp["kv_bytes"] <= xs[i - 1])]
                x = float(np.exp(np.log(members["kv_bytes"]).mean())) if log else float(members["kv_bytes"].mean())
                out.append((x, float(members["score"].max()), float(members["score"].min()), float(ratio)))
                start = i
    return out


# Where a ratio label may go, in order of preference: (anchor, dx, dy in points, ha, va); anchor "top" is the
# cluster's highest point, "bottom" its lowest. Above the stack first (centred, then nudged sideways, then one line
# higher), then below it, then beside its top point.
_CANDIDATES = (
    *[("top", dx, dy, "center", "bottom") for dy in (5, 17) for dx in (0, -7, 7, -13, 13)],
    *[("bottom", dx, -5, "center", "top") for dx in (0, -7, 7)],
    ("top", -7, -1, "right", "center"),
    ("top", 7, -1, "left", "center"),
)
_MARKER_HALF = 4.5  # points: half the size of a scatter marker, an obstacle for labels


def _step_vertices(ax, line) -> np.ndarray:
    """Display coordinates of the corners of a steps-post line."""
    x = np.asarray(line.get_xdata(), float)
    y = np.asarray(line.get_ydata(), float)
    pts = [(x[0], y[0])]
    for i in range(1, len(x)):
        pts += [(x[i], y[i - 1]), (x[i], y[i])]
    return ax.transData.transform(np.array(pts))


def _place_ratio_labels(fig, per_axes, scale):
    """Label every cluster with its ratio where the text overlaps no other label, no marker and stays in the
    axes; with constrained layout settled first so the positions are final."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    pt = fig.dpi / 72.0
    for ax, panel, clusters in per_axes:
        box = ax.get_window_extent(renderer)
        room = Bbox.from_extents(box.x0, box.y0, box.x1, box.y1)
        marks = ax.transData.transform(np.c_[panel["kv_bytes"].to_numpy(float) / scale,
                                             panel["score"].to_numpy(float)])
        taken = [Bbox.from_extents(x - _MARKER_HALF * pt, y - _MARKER_HALF * pt, x + _MARKER_HALF * pt,
                                   y + _MARKER_HALF * pt) for x, y in marks]
        for line in ax.get_lines():  # the front's steps: thin boxes around each segment
            xy = _step_vertices(ax, line)
            for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
                taken.append(Bbox.from_extents(min(x0, x1) - pt, min(y0, y1) - pt, max(x0, x1) + pt,
                                               max(y0, y1) + pt))
        # from the largest memory down: the full cache first
        for x, top, bottom, ratio in sorted(clusters, key=lambda c: -c[0]):
            text = ax.annotate(ratio_label(ratio), (x, top), xytext=(0, 5), textcoords="offset points",
                               ha="center", va="bottom", fontsize=10, color="0.2", zorder=4,
                               annotation_clip=False)
            text.set_in_layout(False)
            chosen = None
            for anchor, dx, dy, ha, va in _CANDIDATES:
                text.xy = (x, top if anchor == "top" else bottom)
                text.xyann = (dx, dy)
                text.set_ha(ha)
                text.set_va(va)
                ext = text.get_window_extent(renderer)
                ext = Bbox.from_extents(ext.x0 - 1.5 * pt, ext.y0, ext.x1 + 1.5 * pt, ext.y1)  # a little air
                inside = room.x0 <= ext.x0 and ext.x1 <= room.x1 and room.y0 <= ext.y0 and ext.y1 <= room.y1
                if inside and not any(ext.overlaps(b) for b in taken):
                    chosen = ext
                    break
            if chosen is None:  # nowhere free: the default place
                anchor, dx, dy, ha, va = _CANDIDATES[0]
                text.xy, text.xyann = (x, top), (dx, dy)
                text.set_ha(ha)
                text.set_va(va)
                chosen = text.get_window_extent(renderer)
            taken.append(chosen)


def build(tables):
    df = require_rows(tables.get("pareto"), NAME, "pareto")
    require_columns(df, NAME, "pareto", ["task", "length", "score", "kv_bytes", "front_memory"])
    df = prepare(df, NAME, "pareto")
    df = df[df["score"].notna() & df["kv_bytes"].notna() & (df["kv_bytes"] > 0)].copy()
    if df.empty:
        raise ValueError(f"figure {NAME!r}: pareto.csv has no row with both a score and kv_bytes")
    df["front_memory"] = as_bool(df["front_memory"])

    tasks = task_order(df["task"])
    if len(tasks) == 2 and tasks[-1] == "mean":  # the mean over one task is that task again
        tasks = tasks[:1]
        df = df[df["task"] == tasks[0]]
    rows = row_keys(df)
    many_models = df["model"].nunique() > 1
    fams = families(df)
    labels = family_labels(fams)
    hollow = {fam: rank > 0 for fam, rank in family_rank(fams).items()}
    unit, scale = byte_unit(float(df["kv_bytes"].max()))

    ncols, nrows = len(tasks), len(rows)
    fig = new_figure(2.9 * ncols + 2.1, 2.4 * nrows + 0.5)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharey=True, squeeze=False))
    used: dict[str, Line2D] = {}
    labels_to_place = []
    front_drawn = False
    for r, (model, length) in enumerate(rows):
        in_row = df[(df["model"] == model) & (df["length"] == length)]
        lo, hi = float(in_row["kv_bytes"].min()) / scale, float(in_row["kv_bytes"].max()) / scale
        log = hi > 10 * lo
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            panel = in_row[in_row["task"] == task]
            if panel.empty:
                ax.remove()
                continue
            if c > 0 and axes[r, 0] in fig.axes:
                ax.sharex(axes[r, 0])
            if log:
                ax.set_xscale("log")
            front = panel[panel["front_memory"]].sort_values(["kv_bytes", "score"])
            right = hi * 1.25 if log else hi * 1.1  # the x limit of the row
            if len(front):
                # the staircase runs on to the right edge: more memory than the front's last point buys nothing
                fx = np.r_[front["kv_bytes"].to_numpy(float) / scale, right]
                fy = np.r_[front["score"].to_numpy(float), front["score"].iloc[-1]]
                ax.plot(fx, fy, drawstyle="steps-post", color=FRONT_COLOR, lw=1.2, zorder=2)
                front_drawn = True
            for method, fam in fams:
                pts = panel[panel["family"] == fam]
                if pts.empty:
                    continue
                color, marker = method_color(method), method_marker(method)
                # a method's first variant filled, its other parameter variants hollow
                face, edge, width = ("white", color, 1.3) if hollow[fam] else (color, "white", 0.5)
                ax.scatter(pts["kv_bytes"] / scale, pts["score"], s=38, marker=marker, facecolors=face,
                           edgecolors=edge, linewidths=width, zorder=3, clip_on=False)
                used.setdefault(labels[fam], Line2D([], [], ls="none", marker=marker, markerfacecolor=face,
                                                    markeredgecolor=edge, markeredgewidth=width, markersize=7,
                                                    color=color))
            labels_to_place.append((ax, panel, [(x / scale, top, bottom, ratio) for x, top, bottom, ratio
                                                 in _clusters(panel, log)]))
            ax.set_title(panel_title(task, model, length, many_models))
            ax.set_ylim(0.0, 1.16)
            ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            if log:
                ax.xaxis.set_major_locator(LogLocator(base=2))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlim(lo / 1.25, right)
            else:
                ax.set_xlim(0.0, right)
            ax.tick_params(labelleft=True)

    if not fig.axes:
        raise ValueError(f"figure {NAME!r}: no (task, length) panel has a point to plot")
    fig.supxlabel(f"KV cache memory ({unit})")
    fig.supylabel("Score")


    handles = [(labels[fam], used[labels[fam]]) for _, fam in fams if labels[fam] in used]
    if front_drawn:
        handles.append(("Memory Pareto front", Line2D([], [], color=FRONT_COLOR, lw=1.2, drawstyle="steps-post")))
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")
    _place_ratio_labels(fig, labels_to_place, scale)  # last: needs the final layout
    return fig


register(Figure(NAME, "score vs KV-cache memory per task x length with the memory Pareto front", ("pareto",), build))
