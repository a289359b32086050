"""Decode throughput against compression ratio ("throughput vs sparsity"): one panel per model (rows) x context
length (columns), one line per method from no press's throughput (dashed, ratio 0) through its ratios.

Throughput is the timing protocol's median with its interval drawn as a bar (timing.csv, kvstudy.timing) where the
study timed the variant at that length; else the eval jobs' mean over tasks and seeds (no interval), and the y
label says which (the values are those of kvstudy.plots.context_scaling, which draws them against length).
Decoding presses sit at the fraction they really evicted by the end, quantized variants at the fraction of KV
memory they save (as in score_vs_ratio). A variant with no throughput at a length (every job out of memory, or
failed) is named under its panel's title, never drawn as a value.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    families,
    is_decoding,
    family_labels,
    family_linestyles,
    lost_variants,
    memory_ratio,
    prepare,
    require_columns,
    require_rows,
    row_title,
)
from kvstudy.plots._pareto import note_groups
from kvstudy.plots.context_scaling import variant_means
from kvstudy.plots.press_style import is_quantized
from kvstudy.plots.style import method_color, method_marker, new_figure

NAME = "throughput_vs_ratio"
Y = "decode_tokens_per_second"


def _points(tables) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(per (model, length, press): ratio, throughput and its bounds, method, family; the lost variants; the note
    on where the values come from)."""
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "status", Y, "ttft_seconds", "peak_memory_bytes"])
    df = memory_ratio(prepare(df, NAME, "results", measured=True))
    ok = df[df["status"].astype(str) == "ok"].copy()
    means, note = variant_means(ok, tables.get("timing"))
    ratio = ok.groupby(["model", "length", "press"])["compression_ratio"].mean().rename("ratio")
    who = df.drop_duplicates("press").set_index("press")[["method", "family"]]
    pts = means.join(ratio, on=["model", "length", "press"]).join(who, on="press")
    pts = pts[pts[Y].notna() & pts["ratio"].notna()]
    kinds = {p: "decoding" if d else "quantized" if is_quantized(m, p) else ""
             for p, m, d in zip(df["press"], df["method"], is_decoding(df))}
    pts = pts.assign(_kind=pts["press"].map(kinds))
    if pts.empty:
        raise ValueError(f"figure {NAME!r}: no variant ran ok with a decode throughput")
    lost = lost_variants(df, NAME).drop_duplicates(["model", "length", "press"])
    drawn = set(zip(pts["model"], pts["length"], pts["press"]))
    lost = lost[np.array([k not in drawn for k in zip(lost["model"], lost["length"], lost["press"])], dtype=bool)]
    return pts, lost, note


def _panel(ax, panel, fams, styles, labels, used) -> None:
    base = panel.loc[panel["method"] == "no_press", Y]
    if len(base):
        ax.axhline(float(base.mean()), color=method_color("no_press"), ls="--", lw=1.0, zorder=1)
        used.setdefault("No press", dict(color=method_color("no_press"), ls="--", marker=method_marker("no_press")))
    for method, fam in fams:
        line = panel[panel["family"] == fam].sort_values("ratio")
        if method == "no_press" or line.empty:
            continue
        if len(base):  # each line starts from the uncompressed throughput at ratio 0
            line = pd.concat([panel[panel["method"] == "no_press"].head(1).assign(ratio=0.0), line])
        style = dict(color=method_color(method), ls=styles[fam], marker=method_marker(method))
        x, y = line["ratio"].to_numpy(float), line[Y].to_numpy(float)
        err = [y - line[f"{Y}_low"].to_numpy(float), line[f"{Y}_high"].to_numpy(float) - y]
        drawn = ax.errorbar(x, y, yerr=err, capsize=2, lw=1.3, markersize=5, zorder=3, **style)
        drawn.lines[0].set_gid(f"tps:{fam}")
        used.setdefault(labels[fam], style)


def build(tables):
    from matplotlib.lines import Line2D

    pts, lost, note = _points(tables)
    models, lengths = sorted(pts["model"].unique()), sorted(pts["length"].astype(int).unique())
    fams = families(pts)
    styles, labels, used = family_linestyles(fams), family_labels(fams), {}
    fig = new_figure(2.9 * len(lengths) + 2.0, 2.4 * len(models) + 0.6)
    axes = fig.subplots(len(models), len(lengths), squeeze=False, sharex=True)
    for (r, model), (c, length) in itertools.product(enumerate(models), enumerate(lengths)):
        ax = axes[r, c]
        where = lambda t: (t["model"] == model) & (t["length"].astype(int) == length)  # noqa: E731
        _panel(ax, pts[where(pts)], fams, styles, labels, used)
        parts = [f"{head} {', '.join(p)}" for head, p in note_groups(lost[where(lost)], labels)]
        ax.set_title("\n".join([row_title(model, length, len(models) > 1), *parts]))  # lost: named, never drawn
        ax.set_xlim(-0.03, 1.0)
        ax.tick_params(labelbottom=True)
    kinds = set(pts["_kind"])
    where = [text for kind, text in (("decoding", "decoding presses: fraction evicted"),
                                     ("quantized", "quantized: fraction of KV memory saved")) if kind in kinds]
    fig.supxlabel("Compression ratio" + (f" ({'; '.join(where)})" if where else "") + f"\n{note}")
    fig.supylabel("Decode throughput (tokens/s)")
    fig.legend([Line2D([], [], **s) for s in used.values()], list(used), loc="outside right upper", title="Method")
    return fig
