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

import numpy as np
import pandas as pd

from kvstudy.plots._common import (
    CELL_TEXT,
    CROSS_COLOR,
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


def _means(ok: pd.DataFrame, timing: pd.DataFrame | None) -> tuple[pd.DataFrame, list, str]:
    """(per (model, press, length): each panel's value and `<col>_low/_high`, the panels, the source note)."""
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
    panels = list(MEASURES)
    if not means["peak_memory_bytes"].notna().any() and held:
        panels[2] = KV_PANEL
        note += "; memory: KV cache held (no peak measured on CPU)"
    return means, panels, note

STRIP = 0.86  # axes fraction where the OOM strip starts; data stay below it


def build(tables, methods=None, ratios=None):  # noqa: C901 -- one figure, drawn in one pass
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, NullLocator

    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "status"] + [m for m, _, _ in MEASURES])
    df = prepare(df, NAME, "results")
    if methods is not None:
        df = df[df["method"].isin(methods)]
    if ratios is not None:
        df = df[(df["method"] == "no_press") | df["compression_ratio"].round(6).isin([round(r, 6) for r in ratios])]
    if df.empty:
        raise ValueError(f"figure {NAME!r}: no results.csv rows left after the methods/ratios options")
    oom_jobs = lost_variants(df, NAME)
    # lost at a length: no task's job of the variant ran ok there; "failed" where any of them failed
    oom = (oom_jobs.groupby(["model", "length", "press"]).agg(tasks=("task", "size"), failed=(
        "status", lambda s: (s == "failed").any())).reset_index()
           .merge(df.groupby(["model", "length", "press"])["task"].nunique().reset_index(name="all"))
           if len(oom_jobs) else pd.DataFrame(columns=["model", "length", "press", "tasks", "failed", "all"]))
    oom = oom[oom["tasks"] == oom["all"]]
    oom = oom.assign(status=np.where(oom["failed"].astype(bool), "failed", "oom"))
    ok = df[df["status"].astype(str) == "ok"].copy()
    if ok.empty and oom.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no ok, oom or failed job")
    timing = tables.get("timing")
    if timing is not None and len(timing):
        timing = timing[timing["press"].isin(set(df["press"]))]
    means, panels, note = _means(ok, timing)
    variants = df.drop_duplicates("press")[["press", "method", "family", "compression_ratio"]]
    fams = families(variants)
    labels = family_labels(fams)
    styles = family_linestyles(fams)
    order = {f: i for i, (_, f) in enumerate(fams)}
    variants = variants.assign(_f=variants["family"].map(order)).sort_values(["_f", "compression_ratio"])
    models = list(dict.fromkeys(df["model"]))
    lengths = sorted(set(df["length"].astype(int)) | set(means["length"].astype(int)))
    ratio_alpha = {r: a for r, a in zip(sorted(variants["compression_ratio"].unique()),
                                        np.linspace(1.0, 0.45, max(1, variants["compression_ratio"].nunique())))}

    strip_label = " / ".join(CELL_TEXT[s] for s in ("oom", "failed") if s in set(oom["status"]))
    # lost variants sharing a length sit side by side in the strip (log2 offsets), in legend order
    rank = {p: i for i, p in enumerate(variants["press"])}
    slot = {}
    for (model, length), g in oom.groupby(["model", "length"]):
        ordered = sorted(g["press"], key=rank.get)
        slot.update({(model, length, p): 0.12 * (i - (len(ordered) - 1) / 2) for i, p in enumerate(ordered)})
    fig = new_figure(3.3 * len(panels) + 2.6, 2.7 * len(models) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(models), len(panels), squeeze=False, sharex=True))
    handles: dict[str, object] = {}
    drawn: set[str] = set()
    for r, model in enumerate(models):
        for c, (col, ylabel, scale) in enumerate(panels):
            ax = axes[r, c]
            ymax = 0.0
            for press, method, fam, ratio in zip(variants["press"], variants["method"], variants["family"],
                                                 variants["compression_ratio"]):
                line = means[(means["model"] == model) & (means["press"] == press)].sort_values("length")
                line = line[line[col].notna()]
                color, marker = method_color(method), method_marker(method)
                style = dict(color=color, marker=marker, ls="--" if method == "no_press" else styles[fam],
                             alpha=ratio_alpha[ratio], markersize=5, lw=1.4)
                label = variant_label(method, fam, ratio, labels)
                if len(line):
                    y = line[col].to_numpy(float) * scale
                    lo, hi = (line[f"{col}{x}"].to_numpy(float) * scale for x in ("_low", "_high"))
                    ymax = max(ymax, float(np.nanmax(np.r_[y, hi])))
                    ax.plot(line["length"], y, gid=f"scale:{press}", **style)
                    if np.any(hi > lo):  # the timing protocol's interval
                        ax.errorbar(line["length"], y, yerr=[y - lo, hi - y], fmt="none", ecolor=color,
                                    alpha=ratio_alpha[ratio], elinewidth=0.9, capsize=2, gid=f"interval:{press}")
                    handles.setdefault(label, Line2D([], [], **style))
                gone = oom[(oom["model"] == model) & (oom["press"] == press)]
                for length, status in zip(gone["length"], gone["status"]):
                    x = length * 2 ** slot[(model, length, press)]
                    ax.plot([x], [0.93], transform=ax.get_xaxis_transform(), ls="none", marker=marker,
                            markersize=7, color=color, markeredgecolor="white", clip_on=False, zorder=5,
                            gid=f"{status}:{press}")
                    ax.plot([x], [0.93], transform=ax.get_xaxis_transform(), ls="none", marker="x",
                            markersize=8.5, markeredgecolor=CROSS_COLOR[status], markeredgewidth=1.1, clip_on=False,
                            zorder=6, gid=f"{status}-cross:{press}")
                    handles.setdefault(label, Line2D([], [], **style))
                    drawn.add(status)
            if not oom.empty:
                ax.add_patch(Rectangle((0, STRIP), 1, 1 - STRIP, transform=ax.transAxes, facecolor="0.93",
                                       edgecolor="none", zorder=0.5))
            top = (ymax if ymax > 0 else 1.0) * (1.05 / STRIP if not oom.empty else 1.1)
            ax.set_ylim(0, top)
            if not oom.empty:  # the strip's label as a tick of its own, clear of the markers in it
                ticks = [t for t in ax.get_yticks() if 0 <= t <= 0.97 * STRIP * top]
                tick_text = ax.yaxis.get_major_formatter().format_ticks(ticks)
                ax.set_yticks([*ticks, (1 + STRIP) / 2 * top], [*tick_text, strip_label])
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(lengths))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([length_label(n) for n in lengths])
            ax.set_ylabel(ylabel)
            ax.set_title(model if len(models) > 1 else ylabel.split(" (")[0])
    fig.supxlabel(f"Context length (tokens)\n{note}")
    items = list(handles.items())
    items += lost_legend_handles(drawn, lambda s: (
        Line2D([], [], ls="none", marker="o", color="0.45", markeredgecolor="white"),
        Line2D([], [], ls="none", marker="x", markeredgecolor=CROSS_COLOR[s], markersize=8.5)))
    fig.legend([h for _, h in items], [label for label, _ in items], loc="outside right upper",
               title="Press variant", alignment="left", ncols=1 if len(items) <= 16 else 2)
    return fig
