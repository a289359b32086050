"""Helpers of the heatmap figures (niah_heatmap, delta_heatmap, sweep_heatmap, tuning_sweep): one row per press
variant, labelled in its method's colour, sizes that follow the number of rows, and OOM / failed cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots._common import CELL_TEXT, HATCH, TEXT_COLOR, families, family_labels, variant_label
from kvstudy.plots.style import method_color, method_order

ROW_INCH = 0.24  # one heatmap row: room for a 10 pt label
LOST_FACE, LOST_EDGE = "0.93", "0.6"


def variant_rows(every: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(press, label, method) per press variant of `every` (columns press, method, family, compression_ratio):
    methods in registry order, a method's families alphabetically, ratios ascending; labels such as
    "SnapKV 0.50", "StreamingLLM + int4 0.50", "No press"."""
    labels = family_labels(families(every))
    order = {m: i for i, m in enumerate(method_order(every["method"].unique()))}
    v = (every.drop_duplicates("press").assign(_m=lambda d: d["method"].map(order))
         .sort_values(["_m", "family", "compression_ratio", "press"]))
    return [(p, variant_label(m, f, r, labels), m) for p, m, f, r in
            zip(v["press"], v["method"], v["family"], v["compression_ratio"])]


def label_rows(ax, rows: list[tuple[str, str, str]], show: bool = True) -> None:
    """Row labels at y = 0.5, 1.5, ... (one per variant), each in its method's colour; none where `show` is
    false (a panel to the right of a labelled one)."""
    ax.set_yticks(np.arange(len(rows)) + 0.5, [label for _, label, _ in rows] if show else [])
    if show:
        for tick, (_, _, method) in zip(ax.get_yticklabels(), rows):
            tick.set_color(method_color(method))


def lost_cell(ax, x: float, y: float, status: str, width: float = 1.0, height: float = 1.0,
              fontsize: float = 9) -> None:
    """A hatched cell (OOM: "////", failed: "xxxx") with its word in the middle, never a value."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, y), width, height, facecolor=LOST_FACE, edgecolor=LOST_EDGE, hatch=HATCH[status],
                           lw=0, zorder=1.5, gid=f"{status}-cell"))
    ax.text(x + width / 2, y + height / 2, CELL_TEXT[status], ha="center", va="center", fontsize=fontsize,
            fontweight="bold", color=TEXT_COLOR[status], zorder=3, gid=f"{status}-label",
            bbox=dict(boxstyle="square,pad=0.1", facecolor=LOST_FACE, edgecolor="none"))


def label_inches(labels) -> float:
    """About the width of the longest row label at 10 pt (0.075 in a character)."""
    return 0.3 + 0.075 * max((len(str(s)) for s in labels), default=0)


def heat_axes(ax) -> None:
    """A heatmap panel: no grid, a light face where no cell is drawn, ticks without marks."""
    ax.grid(False)
    ax.set_facecolor("0.97")
    ax.tick_params(length=0)
