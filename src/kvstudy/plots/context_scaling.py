"""Context-length scaling: time to first token, decode throughput and memory against context length (columns),
one row per model, one line per press variant.

Latency and throughput are the timing protocol's medians with their intervals drawn as bars (timing.csv,
kvstudy.timing), at the lengths it timed (which may be more than the quality grid's); a study with timing off
falls back to the eval jobs' means over tasks and seeds (results.csv, no interval), and the x label says which.
Memory is the peak device memory above the weights where one was measured (CUDA); on CPU, where no per-job peak
exists (kvstudy.measure.PeakMemory), the panel shows the KV cache held (results.csv `kv_bytes_held`) and says so.

A variant that ran out of memory at a length (every job of it there "oom") has no measure there: its line stops,
and a crossed-out marker in its method's colour sits in the grey "OOM" strip at the top of each panel at that
length -- the OOM threshold (e.g. no press OOM at 32K while a compressed run succeeds) reads off directly. A
variant whose jobs failed there (status "failed") is marked the same way with a black cross.

Options: `methods` (list of methods to show, default all), `ratios` (list of compression ratios, default all).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from kvstudy.plots._common import (
    cross_out,
    lost_handle,
    CELL_TEXT,
    family_labels,
    family_linestyles,
    families,
    lost_legend_handles,
    lost_variants,
    prepare,
    require_columns,
    require_rows,
    variant_label,
)
from kvstudy.plots.style import length_label, method_color, method_marker, new_figure

NAME = "context_scaling"
MEASURES = [  # column, axis label, scale
    ("ttft_seconds", "Time to first token (s)", 1.0),
    ("decode_tokens_per_second", "Decode throughput (tokens/s)", 1.0),
    ("peak_memory_bytes", "Peak memory above weights (GB)", 1e-9),
]
KV_PANEL = ("kv_bytes_held", "KV cache held (MiB)", 1 / 2**20)  # the memory panel where no peak was measured


def variant_means(ok: pd.DataFrame, timing: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """(per (model, press, length): each measure's value and `<col>_low/_high`, where the values come from)."""
    cols = [c for c, _, _ in MEASURES]
    held = ["kv_bytes_held"] if "kv_bytes_held" in ok.columns else []
    for col in cols + held:
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    means = ok.groupby(["model", "press", "length"])[cols + held].mean().reset_index()
    note = "eval-job means, no interval (timing protocol off)"
    t = timing[timing["status"].astype(str) == "ok"] if timing is not None and len(timing) else None
    if t is not None and len(t):
        timed = [c for c in cols if t[c].notna().any()]
        keep = t[["model", "press", "length"] + [f"{c}{x}" for c in timed for x in ("", "_low", "_high")]]
        means = means.drop(columns=timed).merge(keep, on=["model", "press", "length"], how="outer")
        note = "timing-protocol medians; bars: their intervals"
    for col in cols + held:
        for x in ("_low", "_high"):
            means[f"{col}{x}"] = means[f"{col}{x}"] if f"{col}{x}" in means.columns else means[col]
    return means, note


def _panels(means: pd.DataFrame) -> tuple[list, str]:
    """The panels (peak memory where one was measured, on CUDA; else the KV cache held) and a note on memory."""
    panels = list(MEASURES)
    if not means["peak_memory_bytes"].notna().any() and "kv_bytes_held" in means.columns:
        panels[2] = KV_PANEL
        return panels, "; memory: KV cache held (no peak measured on CPU)"
    return panels, ""

STRIP = 0.86  # axes fraction where the OOM strip starts; data stay below it


def _lost_lengths(df: pd.DataFrame) -> pd.DataFrame:
    """(model, length, press, status) where no task's job of the variant ran ok; "failed" where any failed."""
    jobs = lost_variants(df, NAME)
    if jobs.empty:
        return pd.DataFrame(columns=["model", "length", "press", "status"])
    lost = (jobs.groupby(["model", "length", "press"])
            .agg(tasks=("task", "size"), failed=("status", lambda s: (s == "failed").any())).reset_index()
            .merge(df.groupby(["model", "length", "press"])["task"].nunique().reset_index(name="all")))
    lost = lost[lost["tasks"] == lost["all"]]
    return lost.assign(status=np.where(lost["failed"].astype(bool), "failed", "oom"))


def _selected(tables, methods, ratios) -> pd.DataFrame:
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "status"] + [m for m, _, _ in MEASURES])
    df = prepare(df, NAME, "results")
    if methods is not None:
        df = df[df["method"].isin(methods)]
    if ratios is not None:
        df = df[(df["method"] == "no_press") | df["compression_ratio"].round(6).isin([round(r, 6) for r in ratios])]
    if df.empty:
        raise ValueError(f"figure {NAME!r}: no results.csv rows left after the methods/ratios options")
    return df


def _variants(df: pd.DataFrame, oom: pd.DataFrame) -> dict:
    """Each press variant's legend label and line style (alpha by ratio), in legend order, and the offsets
    (log2) of lost variants that share a length in the strip."""
    variants = df.drop_duplicates("press")[["press", "method", "family", "compression_ratio"]]
    fams = families(variants)
    labels, styles = family_labels(fams), family_linestyles(fams)
    order = {f: i for i, (_, f) in enumerate(fams)}
    variants = variants.assign(_f=variants["family"].map(order)).sort_values(["_f", "compression_ratio"])
    ratios = sorted(variants["compression_ratio"].unique())
    alpha = dict(zip(ratios, np.linspace(1.0, 0.45, max(1, len(ratios)))))
    out = {}
    for press, method, fam, ratio in zip(variants["press"], variants["method"], variants["family"],
                                         variants["compression_ratio"]):
        style = dict(color=method_color(method), marker=method_marker(method), markersize=5, lw=1.4,
                     ls="--" if method == "no_press" else styles[fam], alpha=alpha[ratio])
        out[press] = (variant_label(method, fam, ratio, labels), style)
    rank = {p: i for i, p in enumerate(out)}
    slot = {}
    for (model, length), g in oom.groupby(["model", "length"]):
        ordered = sorted(g["press"], key=rank.get)
        slot.update({(model, length, p): 0.12 * (i - (len(ordered) - 1) / 2) for i, p in enumerate(ordered)})
    return {"variants": out, "slot": slot}


def _draw_line(ax, line, col, scale, press, style) -> float:
    """A variant's measure against length, with the timing interval where there is one; returns its top."""
    y = line[col].to_numpy(float) * scale
    lo, hi = (line[f"{col}{x}"].to_numpy(float) * scale for x in ("_low", "_high"))
    ax.plot(line["length"], y, gid=f"scale:{press}", **style)
    if np.any(hi > lo):  # the timing protocol's interval
        ax.errorbar(line["length"], y, yerr=[y - lo, hi - y], fmt="none", ecolor=style["color"],
                    alpha=style["alpha"], elinewidth=0.9, capsize=2, gid=f"interval:{press}")
    return float(np.nanmax(np.r_[y, hi]))


def _draw_lost(ax, gone, press, style, slot, model) -> set:
    """Crossed-out markers in the strip at the lengths where the variant has no measure."""
    for length, status in zip(gone["length"], gone["status"]):
        cross_out(ax, length * 2 ** slot[(model, length, press)], 0.93, status, style["color"], style["marker"],
                  gid=press, transform=ax.get_xaxis_transform())
    return set(gone["status"])


def _axes(ax, ymax, oom, lengths, strip_label) -> None:
    """y from 0 (room for the strip at the top where it is shown), x the lengths on a log2 axis."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, NullLocator

    if not oom.empty:
        ax.add_patch(Rectangle((0, STRIP), 1, 1 - STRIP, transform=ax.transAxes, facecolor="0.93",
                               edgecolor="none", zorder=0.5))
    top = (ymax if ymax > 0 else 1.0) * (1.05 / STRIP if not oom.empty else 1.1)
    ax.set_ylim(0, top)
    if not oom.empty:  # the strip's label as a tick of its own, clear of the markers in it
        ticks = [t for t in ax.get_yticks() if 0 <= t <= 0.97 * STRIP * top]
        ax.set_yticks([*ticks, (1 + STRIP) / 2 * top],
                      [*ax.yaxis.get_major_formatter().format_ticks(ticks), strip_label])
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(lengths))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([length_label(n) for n in lengths])


def _panel(ax, model, col, scale, means, oom, v, handles) -> tuple[float, set]:
    ymax, drawn = 0.0, set()
    for press, (label, style) in v["variants"].items():
        line = means[(means["model"] == model) & (means["press"] == press)].sort_values("length")
        line = line[line[col].notna()]
        gone = oom[(oom["model"] == model) & (oom["press"] == press)]
        if len(line):
            ymax = max(ymax, _draw_line(ax, line, col, scale, press, style))
        drawn |= _draw_lost(ax, gone, press, style, v["slot"], model)
        if len(line) or len(gone):
            handles.setdefault(label, Line2D([], [], **style))
    return ymax, drawn


def build(tables, methods=None, ratios=None):
    df = _selected(tables, methods, ratios)
    oom, ok = _lost_lengths(df), df[df["status"].astype(str) == "ok"]
    if ok.empty and oom.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no ok, oom or failed job")
    timing = tables.get("timing")
    timing = timing[timing["press"].isin(set(df["press"]))] if timing is not None and len(timing) else timing
    means, note = variant_means(ok, timing)
    panels, memory_note = _panels(means)
    note += memory_note
    v, models = _variants(df, oom), list(dict.fromkeys(df["model"]))
    lengths = sorted(set(df["length"].astype(int)) | set(means["length"].astype(int)))
    strip_label = " / ".join(CELL_TEXT[s] for s in ("oom", "failed") if s in set(oom["status"]))
    fig = new_figure(3.3 * len(panels) + 2.6, 2.7 * len(models) + 0.4)
    axes = fig.subplots(len(models), len(panels), squeeze=False, sharex=True)
    handles, drawn = {}, set()
    for (r, model), (c, (col, ylabel, scale)) in itertools.product(enumerate(models), enumerate(panels)):
        ymax, lost = _panel(axes[r, c], model, col, scale, means, oom, v, handles)
        drawn |= lost
        _axes(axes[r, c], ymax, oom, lengths, strip_label)
        axes[r, c].set_ylabel(ylabel)
        axes[r, c].set_title(model if len(models) > 1 else ylabel.split(" (")[0])
    fig.supxlabel(f"Context length (tokens)\n{note}")
    items = list(handles.items()) + lost_legend_handles(drawn, lost_handle)
    fig.legend([h for _, h in items], [label for label, _ in items], loc="outside right upper",
               title="Press variant", alignment="left", ncols=1 if len(items) <= 16 else 2)
    return fig
