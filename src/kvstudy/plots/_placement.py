"""Placing text in a drawn panel without covering anything: the ratio labels of the Pareto figures (each cluster
of points labelled once, above, below or beside it, wherever the text overlaps no marker, no front segment and no
other label) and the panels' OOM notes (in the first free corner, else under the x axis).

Written by hand: matplotlib has no label placement, and adjustText (the usual library) moves labels iteratively
with arrows, which reads worse at this density than trying a dozen fixed places per label; the layout is
settled (draw_without_rendering) before any text is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kvstudy.plots._common import TEXT_COLOR

if TYPE_CHECKING:
    from matplotlib.transforms import Bbox


def clusters(panel, log: bool):
    """Points with the same label (`tag`: "0.50", "int4") and (within 3 %) the same cost -> (x, top score, bottom
    score, tag); points without a tag (no press) get no label."""
    out = []
    for tag, grp in panel[panel["tag"] != ""].groupby("tag", sort=True):
        xs = np.sort(grp["x"].to_numpy(float))
        start = 0
        for i in range(1, len(xs) + 1):
            if i == len(xs) or xs[i] > xs[start] * 1.03:
                members = grp[(grp["x"] >= xs[start]) & (grp["x"] <= xs[i - 1])]
                x = float(np.exp(np.log(members["x"]).mean())) if log else float(members["x"].mean())
                out.append((x, float(members["score"].max()), float(members["score"].min()), str(tag)))
                start = i
    return out


# Where a ratio label may go, in order of preference: (anchor, dx, dy in points, ha, va); anchor "top" is the
# cluster's highest point, "bottom" its lowest. Above the stack first (centred, then nudged sideways, then one line
# higher), then below it, then beside its top point.
_CANDIDATES = (
    *[("top", dx, dy, "center", "bottom") for dy in (5, 17, 29) for dx in (0, -7, 7, -13, 13)],
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


def _free_place(ax, text, renderer, pt, room, taken, x, top, bottom):
    """Move `text` to the first candidate place that stays in `room` and overlaps nothing in `taken`; its box,
    or None where there is none."""
    from matplotlib.transforms import Bbox

    for anchor, dx, dy, ha, va in _CANDIDATES:
        text.xy = (x, top if anchor == "top" else bottom)
        text.xyann = (dx, dy)
        text.set_ha(ha)
        text.set_va(va)
        ext = text.get_window_extent(renderer)
        ext = Bbox.from_extents(ext.x0 - 1.5 * pt, ext.y0, ext.x1 + 1.5 * pt, ext.y1)  # a little air
        inside = room.x0 <= ext.x0 and ext.x1 <= room.x1 and room.y0 <= ext.y0 and ext.y1 <= room.y1
        if inside and not any(ext.overlaps(b) for b in taken):
            return ext
    return None


def place_ratio_labels(fig, per_axes, scale) -> int:
    """Label every cluster (x, top, bottom, text) where the text overlaps no other label, no marker, no front
    segment and stays in the axes, with the layout settled first so the positions are final. A label with no free
    place is hidden, never printed over another (its points keep their legend entry); returns how many were."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    pt = fig.dpi / 72.0
    hidden = 0
    for ax, panel, clusters in per_axes:
        room = ax.get_window_extent(renderer)
        taken = _obstacles(ax, renderer, pt, scale, panel)
        for x, top, bottom, tag in sorted(clusters, key=lambda c: -c[0]):  # from the largest cost down
            text = ax.annotate(tag, (x, top), xytext=(0, 5), textcoords="offset points", ha="center", va="bottom",
                               fontsize=10, color="0.2", zorder=4, annotation_clip=False, gid="ratio-label")
            text.set_in_layout(False)
            box = _free_place(ax, text, renderer, pt, room, taken, x, top, bottom)
            if box is None:
                text.set_visible(False)
                text.set_gid("ratio-label-hidden")
                hidden += 1
            else:
                taken.append(box)
    return hidden


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


def place_labels_and_notes(fig, labels_to_place, notes, scale):
    """Ratio labels first, then each panel's OOM note in a free corner of the panel. A note with no free corner
    goes under the panel's x axis instead (as its x label, so the layout makes room and it covers nothing); the
    layout then changes, so the labels and the corner notes are placed again."""
    below: set[int] = set()
    while True:
        for ax in fig.axes:
            for t in list(ax.texts):
                if t.get_gid() in ("ratio-label", "oom-note"):
                    t.remove()
        place_ratio_labels(fig, labels_to_place, scale)  # settles the layout first
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


