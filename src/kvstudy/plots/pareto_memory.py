"""Score vs KV-cache memory (from pareto.csv): one panel per task (columns, the task mean last) x context length
(rows); points coloured and marked by method, the memory Pareto front joined by a step line, points labelled with
their compression ratio.

Press variants with the same ratio keep about the same number of tokens, so they stack at one memory value: such a
stack gets one ratio label (above its top point) instead of one per point.

A variant that ran out of GPU memory (results.csv status "oom", so no row in pareto.csv) has neither a score nor a
memory value: each panel lists its OOM variants in a small note ("OOM: TOVA 0.50") placed in a corner free of
points, lines and labels; such a variant is never a point and never on the front. In the task-mean panel a variant
counts as OOM when it ran out of memory on any task (it then has no mean). A variant whose jobs failed (status
"failed") is listed the same way in a "failed: ..." line of the note.

Memory is the cache a variant held (pareto.csv `kv_bytes`, from results.csv `kv_bytes_held`): after prefill, or at
the end of generation for decoding presses, whose ratio label is the fraction they really evicted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    TEXT_COLOR,
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

if TYPE_CHECKING:
    from matplotlib.transforms import Bbox
from kvstudy.plots.style import (
    byte_unit,
    method_color,
    method_marker,
    method_order,
    new_figure,
    ratio_label,
)

NAME = "pareto_memory"
FRONT_COLOR = "0.35"


def _clusters(panel, log: bool):
    """Groups of points with the same ratio and (within 3 %) the same memory -> (x, top, bottom score, ratio)."""
    out = []
    for ratio, grp in panel.groupby("compression_ratio", sort=True):
        xs = np.sort(grp["x"].to_numpy(float))
        start = 0
        for i in range(1, len(xs) + 1):
            if i == len(xs) or xs[i] > xs[start] * 1.03:
                members = grp[(grp["x"] >= xs[start]) & (grp["x"] <= xs[i - 1])]
                x = float(np.exp(np.log(members["x"]).mean())) if log else float(members["x"].mean())
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
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    pt = fig.dpi / 72.0
    for ax, panel, clusters in per_axes:
        box = ax.get_window_extent(renderer)
        room = Bbox.from_extents(box.x0, box.y0, box.x1, box.y1)
        marks = ax.transData.transform(np.c_[panel["x"].to_numpy(float) / scale,
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
                               annotation_clip=False, gid="ratio-label")
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


# Where a panel's OOM note may go (axes fraction x, y, ha, va), in order of preference: the top left lies above the
# memory front (no point can be there), the bottom right below it (dominated: few points).
_NOTE_PLACES = (
    (0.02, 0.98, "left", "top"),
    (0.98, 0.03, "right", "bottom"),
    (0.02, 0.03, "left", "bottom"),
    (0.98, 0.98, "right", "top"),
    (0.98, 0.5, "right", "center"),
    (0.02, 0.5, "left", "center"),
    (0.5, 0.03, "center", "bottom"),
)
NOTE_WIDTHS = (60, 30, 20)  # characters per line tried for an OOM note in a panel: one line, then narrower
NOTE_STYLE = dict(fontsize=8, linespacing=1.15)  # colour: TEXT_COLOR of the note's first kind (OOM, failed)


def _oom_panels(results, tasks, pareto, name=NAME) -> pd.DataFrame:
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


def _wrap(groups: list[tuple[str, list[str]]], width: int) -> str:
    """"OOM: No press; TOVA 0.25, 0.50" (then "failed: ...") in lines of about `width` characters, broken
    between variants only."""
    lines = []
    for prefix, parts in groups:
        lines.append(prefix)
        for i, part in enumerate(parts):
            piece = part + (";" if i < len(parts) - 1 else "")
            if len(lines[-1]) + 1 + len(piece) <= width or lines[-1] == prefix:
                lines[-1] += " " + piece
            else:
                lines.append(piece)
    return "\n".join(lines)


def _note_color(groups) -> str:
    """OOM's dark red for a note of OOM variants only; near black as soon as it lists failed ones."""
    return TEXT_COLOR["oom" if all(prefix == "OOM:" for prefix, _ in groups) else "failed"]


def _obstacles(ax, renderer, pt, scale, panel) -> list[Bbox]:
    """Display boxes of a panel's markers, front segments and texts."""
    from matplotlib.transforms import Bbox

    taken = []
    if len(panel):
        marks = ax.transData.transform(np.c_[panel["x"].to_numpy(float) / scale,
                                             panel["score"].to_numpy(float)])
        taken += [Bbox.from_extents(x - _MARKER_HALF * pt, y - _MARKER_HALF * pt, x + _MARKER_HALF * pt,
                                    y + _MARKER_HALF * pt) for x, y in marks]
    for line in ax.get_lines():
        xy = _step_vertices(ax, line)
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
            taken.append(Bbox.from_extents(min(x0, x1) - pt, min(y0, y1) - pt, max(x0, x1) + pt, max(y0, y1) + pt))
    taken += [t.get_window_extent(renderer) for t in ax.texts if t.get_visible()]
    return taken


def _note_in_corner(ax, renderer, pt, scale, panel, text):
    """The note as a text in the first corner (and line width) where it covers no marker, line or label and stays
    in the axes; None (nothing added) where there is no such place."""
    from matplotlib.transforms import Bbox

    box = ax.get_window_extent(renderer)
    taken = _obstacles(ax, renderer, pt, scale, panel)
    places = ((0.5, 0.5, "center", "center"),) if panel.empty else _NOTE_PLACES
    note = ax.text(0, 0, "", transform=ax.transAxes, zorder=6, gid="oom-note", color=_note_color(text),
                   **NOTE_STYLE)
    note.set_in_layout(False)
    for width in NOTE_WIDTHS:
        note.set_text(_wrap(text, width))
        for x, y, ha, va in places:
            note.set_position((x, y))
            note.set_ha(ha)
            note.set_va(va)
            ext = note.get_window_extent(renderer)
            ext = Bbox.from_extents(ext.x0 - 2 * pt, ext.y0 - 2 * pt, ext.x1 + 2 * pt, ext.y1 + 2 * pt)
            inside = box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1
            if inside and not any(ext.overlaps(b) for b in taken):
                return note
    note.remove()
    return None


def _place_labels_and_notes(fig, labels_to_place, notes, scale):
    """Ratio labels first, then each panel's OOM note in a free corner of the panel. A note with no free corner
    goes under the panel's x axis instead (as its x label, so the layout makes room and it covers nothing); the
    layout then changes, so the labels and the corner notes are placed again."""
    below: set[int] = set()
    while True:
        for ax in fig.axes:
            for t in list(ax.texts):
                if t.get_gid() in ("ratio-label", "oom-note"):
                    t.remove()
        _place_ratio_labels(fig, labels_to_place, scale)  # settles the layout first
        if not notes:
            return
        renderer = fig.canvas.get_renderer()
        pt = fig.dpi / 72.0
        moved = False
        for i, (ax, panel, text) in enumerate(notes):
            if i in below:
                continue
            if _note_in_corner(ax, renderer, pt, scale, panel, text) is None:
                label = ax.set_xlabel(_wrap(text, NOTE_WIDTHS[1]), color=_note_color(text), **NOTE_STYLE)
                label.set_gid("oom-note")
                below.add(i)
                moved = True
        if not moved:
            return


def build_front(tables, name: str, x_column: str, front_column: str, x_unit, x_label: str, front_label: str,
                bounds: tuple[str, str] | None = None, note: str = ""):
    """Score against `x_column` of pareto.csv with the front `front_column`; `x_unit(max) -> (unit, scale)`.
    Shared with pareto_latency (the same figure against time to first token), which gives `bounds`, the columns
    of x's interval (drawn as horizontal bars where present), and a `note` under the x label."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    df = require_rows(tables.get("pareto"), name, "pareto")
    require_columns(df, name, "pareto", ["task", "length", "score", x_column, front_column])
    df = prepare(df.drop(columns=[c for c in ("x", "front") if c in df.columns]), name, "pareto", measured=True)
    df = df.rename(columns={x_column: "x", front_column: "front"})
    df["x"] = pd.to_numeric(df["x"], errors="coerce")
    have_bounds = bounds is not None and all(b in df.columns for b in bounds)
    for key, col in zip(("x_low", "x_high"), bounds if have_bounds else ("x", "x")):
        df[key] = pd.to_numeric(df[col], errors="coerce").fillna(df["x"])
    df["task"] = df["task"].astype(str)
    df = df[df["score"].notna() & df["x"].notna() & (df["x"] > 0)].copy()
    if df.empty:
        raise ValueError(f"figure {name!r}: pareto.csv has no row with both a score and {x_column}")
    df["front"] = as_bool(df["front"])

    tasks = task_order(df["task"])
    if len(tasks) == 2 and tasks[-1] == "mean":  # the mean over one task is that task again
        tasks = tasks[:1]
        df = df[df["task"] == tasks[0]]
    oom = _oom_panels(tables.get("results"), tasks, df, name)
    every = pd.concat([df[["model", "task", "length", "method", "family"]],
                       oom[["model", "task", "length", "method", "family"]]], ignore_index=True)
    rows = row_keys(every)
    many_models = every["model"].nunique() > 1
    fams = families(every)
    labels = family_labels(fams)
    hollow = {fam: rank > 0 for fam, rank in family_rank(fams).items()}
    unit, scale = x_unit(float(df["x"].max()))

    ncols, nrows = len(tasks), len(rows)
    fig = new_figure(2.9 * ncols + 2.1, 2.4 * nrows + 0.5)
    # scores in [0, 1] share one 0-1 axis; other scores (perplexity) get each panel's own range, and a
    # lower-is-better score is drawn with its axis inverted so that up is better in every panel
    unit_score = bool(df["score"].between(0, 1).all())
    lower_better = set()
    if "higher_is_better" in df.columns:
        flags = df["higher_is_better"].astype(str).str.strip().str.lower().isin(["false", "0", "0.0"])
        lower_better = set(zip(df.loc[flags, "model"], df.loc[flags, "task"], df.loc[flags, "length"]))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharey=unit_score, squeeze=False))
    used: dict[str, Line2D] = {}
    labels_to_place = []
    notes = []  # (axes, its points, OOM note)
    front_drawn = False
    for r, (model, length) in enumerate(rows):
        in_row = df[(df["model"] == model) & (df["length"] == length)]
        oom_row = oom[(oom["model"] == model) & (oom["length"] == length)]
        if len(in_row):
            lo, hi = float(in_row["x_low"].min()) / scale, float(in_row["x_high"].max()) / scale
        else:  # every variant of the row ran out of memory: panels with their note only
            lo, hi = 0.0, 1.0
        log = hi > 10 * lo
        row_first = None
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            panel = in_row[in_row["task"] == task]
            panel_oom = oom_row[oom_row["task"] == task]
            if panel.empty and panel_oom.empty:
                ax.remove()
                continue
            if row_first is None:
                row_first = ax
            elif len(in_row):
                ax.sharex(row_first)
            if not panel_oom.empty:
                notes.append((ax, panel, note_groups(panel_oom, labels)))
            ax.set_title(panel_title(task, model, length, many_models))
            if unit_score:
                ax.set_ylim(0.0, 1.16)
                ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            elif len(panel):
                lo_s, hi_s = float(panel["score"].min()), float(panel["score"].max())
                pad = 0.1 * ((hi_s - lo_s) or abs(hi_s) or 1.0)
                ax.set_ylim(lo_s - pad, hi_s + 1.6 * pad)
            if (model, task, length) in lower_better:
                ax.invert_yaxis()
            ax.tick_params(labelleft=True)
            if in_row.empty:
                ax.set_xlim(0.0, 1.0)
                ax.set_xticks([])
                continue
            if log:
                ax.set_xscale("log")
            front = panel[panel["front"]].sort_values(["x", "score"])
            right = hi * 1.25 if log else hi * 1.1  # the x limit of the row
            if len(front):
                # the staircase runs on to the right edge: more memory than the front's last point buys nothing
                fx = np.r_[front["x"].to_numpy(float) / scale, right]
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
                if have_bounds:  # the interval of the measure (pareto_latency: the timing protocol's)
                    ax.errorbar(pts["x"] / scale, pts["score"], xerr=[(pts["x"] - pts["x_low"]) / scale,
                                                                      (pts["x_high"] - pts["x"]) / scale],
                                fmt="none", ecolor=color, elinewidth=0.9, capsize=2, alpha=0.75, zorder=2.5,
                                gid=f"interval:{fam}")
                ax.scatter(pts["x"] / scale, pts["score"], s=38, marker=marker, facecolors=face,
                           edgecolors=edge, linewidths=width, zorder=3, clip_on=False)
                used.setdefault(labels[fam], Line2D([], [], ls="none", marker=marker, markerfacecolor=face,
                                                    markeredgecolor=edge, markeredgewidth=width, markersize=7,
                                                    color=color))
            if len(panel):
                labels_to_place.append((ax, panel, [(x / scale, top, bottom, ratio) for x, top, bottom, ratio
                                                     in _clusters(panel, log)]))
            if log:
                ax.xaxis.set_major_locator(LogLocator(base=2))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlim(lo / 1.25, right)
            else:
                ax.set_xlim(0.0, right)

    if not fig.axes:
        raise ValueError(f"figure {name!r}: no (task, length) panel has a point to plot")
    fig.supxlabel(f"{x_label} ({unit})" + (f"\n{note}" if note else ""))
    fig.supylabel("Score")

    handles = [(labels[fam], used[labels[fam]]) for _, fam in fams if labels[fam] in used]
    if front_drawn:
        handles.append((front_label, Line2D([], [], color=FRONT_COLOR, lw=1.2, drawstyle="steps-post")))
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")
    _place_labels_and_notes(fig, labels_to_place, notes, scale)  # last: needs the final layout
    return fig


def build(tables):
    return build_front(tables, NAME, "kv_bytes", "front_memory", byte_unit, "KV cache memory", "Memory Pareto front")
