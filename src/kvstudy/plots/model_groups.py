"""Model-group comparison (e.g. reasoning vs base models): score change against each model's own uncompressed
score, against compression ratio, one panel per press method family, one line per model group (from
results.csv).

Groups come from the `groups` option: model -> group name, filled from `models.<m>.group` in the study config
(kvstudy.plots.specs). For each model x task x length, Δ = variant score - no-press score (mean over seeds; sign
flipped for lower-is-better scores so that positive is better); a group's point is the mean Δ over its models,
tasks and lengths, with a band of ±1 s.d. across its models. Line colour and marker are the press method's, as in
every figure; the line style tells the group. A variant that ran out of memory (or failed) in every job of a group
is a crossed-out marker in the grey strip at the bottom of the panel (red cross: OOM, black cross: failed), never a
value. Decoding presses sit at the fraction of the cache they really evicted (mean over the group's cells), not at
their nominal ratio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from kvstudy.plots._common import (
    cross_out,
    lost_handle,
    families,
    family_labels,
    lost_legend_handles,
    lost_variants,
    memory_ratio,
    prepare,
    require_columns,
    require_rows,
    scored,
)
from kvstudy.plots.press_style import is_quantized
from kvstudy.plots.style import method_color, method_marker, new_figure
from kvstudy.plots.tables import lower_is_better

NAME = "model_groups"
GROUP_STYLES = ("-", "--", ":", "-.")
STRIP = 0.12  # axes fraction of the OOM strip at the bottom


def _points(ok: pd.DataFrame) -> pd.DataFrame:
    """Per (group, press variant): mean and s.d. across the group's models of the Δ to each model's own no-press
    score (cells: model x task x length, seeds averaged), at the variant's mean ratio over those cells."""
    cell = ["model", "task", "length"]
    means = ok.groupby([*cell, "press"]).agg(score=("score", "mean"), method=("method", "first"),
                                             family=("family", "first"), ratio=("compression_ratio", "mean"),
                                             group=("group", "first"), sign=("_sign", "first")).reset_index()
    base = means[means["method"] == "no_press"].set_index(cell)["score"]
    var = means[means["method"] != "no_press"].join(base.rename("base"), on=cell).dropna(subset=["base"])
    var["delta"] = (var["score"] - var["base"]) * var["sign"]
    per_model = var.groupby(["group", "model", "press", "family", "method"]).agg(
        delta=("delta", "mean"), ratio=("ratio", "mean")).reset_index()
    return per_model.groupby(["group", "press", "family", "method"]).agg(
        mean=("delta", "mean"), std=("delta", "std"), ratio=("ratio", "mean")).reset_index()


def _lost_per_group(df: pd.DataFrame, ok: pd.DataFrame, groups: dict) -> pd.DataFrame:
    """Compressed variants that no job of a group ran ok (OOM or failed), one row per (group, press)."""
    lost = lost_variants(df, NAME)
    lost = lost[lost["method"] != "no_press"].assign(group=lambda d: d["model"].map(groups))
    ok_keys = set(zip(ok["group"], ok["press"]))
    keep = np.array([(g, p) not in ok_keys for g, p in zip(lost["group"], lost["press"])], dtype=bool)
    lost = lost[keep].sort_values("status", ascending=True)  # "failed" before "oom": failed wins a tie
    return lost.drop_duplicates(["group", "press"]).reset_index(drop=True)


def _grouped(tables, groups, tasks=None) -> tuple[pd.DataFrame, list[str]]:
    """Jobs of grouped models on scores in [0, 1], quantized variants at the memory they save; and the tasks left
    out (a perplexity's change is not on the scale of an accuracy's: averaging them would hide every accuracy)."""
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score", "status"])
    if not groups or len(set(groups.values())) < 2:
        raise ValueError(f"figure {NAME!r} needs at least two model groups: set models.<name>.group in the config "
                         "(or the figure's groups option)")
    df = memory_ratio(prepare(df, NAME, "results", measured=True))
    if tasks is not None:  # e.g. the log's ICL-only figure (Banking77, Clinic150)
        df = df[df["task"].astype(str).isin([str(t) for t in tasks])]
    df = df[df["model"].isin(groups)].assign(group=lambda d: d["model"].map(groups))
    if df.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no job of a grouped model ({', '.join(groups)})")
    unit = scored(df).groupby("task")["score"].agg(lambda s: s.between(0, 1).all())
    left_out = sorted(unit.index[~unit])
    df = df[~df["task"].isin(left_out)]
    return df.assign(_sign=np.where(lower_is_better(df), -1.0, 1.0)), left_out


def _limits(points, lost) -> tuple[float, float]:
    lo = float(np.nanmin(points["mean"] - points["std"].fillna(0))) if len(points) else -1.0
    hi = float(np.nanmax(points["mean"] + points["std"].fillna(0))) if len(points) else 0.0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = (hi - lo) or 1.0
    top = hi + 0.08 * span
    # with an OOM strip: the strip (bottom STRIP of the axes) ends below the lowest value
    return ((lo - 0.04 * span - STRIP * top) / (1 - STRIP) if not lost.empty else lo - 0.05 * span), top


def _panel(ax, method, fam, points, lost, gstyle) -> set:
    """One method family: a line per group (solid first, drawn last so it stays on top), lost variants crossed
    out in the strip; returns the kinds of lost variants drawn."""
    color, marker, names, drawn = method_color(method), method_marker(method), list(gstyle), set()
    ax.axhline(0.0, color="black", lw=0.8, ls="-", zorder=1)
    for gi, g in enumerate(names):
        line = points[(points["family"] == fam) & (points["group"] == g)].sort_values("ratio")
        solid = gstyle[g] == "-"
        if len(line):
            x, y, sd = (line[c].fillna(0).to_numpy(float) for c in ("ratio", "mean", "std"))
            ax.plot(x, y, color=color, marker=marker, ls=gstyle[g], lw=1.5, markersize=6, zorder=4 - 0.1 * gi,
                    markerfacecolor=color if solid else "white", markeredgecolor=color, gid=f"group:{g}:{fam}")
            ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.08, lw=0)
        gone = lost[(lost["family"] == fam) & (lost["group"] == g)]
        for ratio, status in sorted(zip(gone["compression_ratio"].astype(float), gone["status"])):
            x_lost = ratio + 0.04 * (gi - (len(names) - 1) / 2)  # groups side by side
            cross_out(ax, x_lost, STRIP / 2, status, color, marker, hollow=not solid, gid=f"{g}:{fam}",
                      transform=ax.get_xaxis_transform())
            drawn.add(status)
    return drawn


def _legend(fig, groups, gstyle, drawn) -> None:
    handles = [(f"{g} ({', '.join(m for m, gg in groups.items() if gg == g)})",
                Line2D([], [], color="0.3", ls=style, marker="o", markerfacecolor="0.3" if style == "-" else "white"))
               for g, style in gstyle.items()]
    handles += lost_legend_handles(drawn, lost_handle)
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Model group", alignment="left")


def build(tables, groups=None, tasks=None):
    from matplotlib.patches import Rectangle

    df, left_out = _grouped(tables, groups, tasks)
    ok = scored(df)
    points, lost = _points(ok), _lost_per_group(df, ok, groups)
    every = pd.concat([points[["method", "family"]], lost[["method", "family"]]], ignore_index=True)
    if every.empty:
        raise ValueError(f"figure {NAME!r}: no compressed variant with a no-press baseline in any group")
    fams = families(every)
    labels = family_labels(fams)
    gstyle = {g: GROUP_STYLES[i % len(GROUP_STYLES)] for i, g in enumerate(sorted(set(groups.values())))}
    ncols = min(len(fams), 4)
    fig = new_figure(3.0 * ncols + 1.8, 2.6 * int(np.ceil(len(fams) / ncols)) + 0.4)
    axes = fig.subplots(int(np.ceil(len(fams) / ncols)), ncols, squeeze=False, sharey=True).ravel()
    bottom, top = _limits(points, lost)
    drawn: set[str] = set()
    for ax, (method, fam) in zip(axes, fams):
        drawn |= _panel(ax, method, fam, points, lost, gstyle)
        if not lost.empty:
            ax.add_patch(Rectangle((0, 0), 1, STRIP, transform=ax.transAxes, facecolor="0.93", edgecolor="none",
                                   zorder=0.5))
        ax.set(ylim=(bottom, top), xlim=(0.0, 1.0), title=labels[fam])
        ax.tick_params(labelleft=True)
    for ax in axes[len(fams):]:
        ax.remove()
    quantized = any(is_quantized(m, f) for m, f in fams)
    fig.supxlabel("Compression ratio" + ("  (quantized: fraction of KV memory saved)" if quantized else ""))
    fig.supylabel("Δ score vs own no press (positive = better)"
                  + (f"\nscores in [0, 1] only; left out: {', '.join(left_out)}" if left_out else ""))
    _legend(fig, groups, gstyle, drawn)
    return fig
