"""Runtime against compression ratio, warm and cold (log 001's break-even question): one panel per model (rows) x
timed length (columns), one colour per method; solid: the timing protocol's warm median with its interval, dashed
with hollow markers: the cold median (each variant's first call after a model load, `timing.cold`,
kvstudy.timing_cold). Every line starts from no press at ratio 0; no press is also drawn across (grey: warm solid,
cold dashed), so a press is faster than the full cache where its line falls below that.

Read from timing.csv only: variants sit at their nominal ratio (the timing run decodes a fixed number of tokens
and records no evicted fraction). A study without cold runs draws warm lines and says so under the axis. A variant
that ran out of memory or failed (warm, or cold only) is named under its panel's title, never drawn as a value.
"""

from __future__ import annotations

import itertools

import pandas as pd

from kvstudy.plots._common import families, family_labels, family_linestyles, prepare, require_rows, row_title
from kvstudy.plots._pareto import note_groups
from kvstudy.plots.style import method_color, method_marker, new_figure

NAME = "runtime_vs_ratio"
LOST = ("oom", "failed")
MEASURES = {"run_seconds": "Runtime per call (s)\nprefill + question + decoding",
            "ttft_seconds": "Time to first token (s)", "prefill_seconds": "Prefill (s)"}


def _points(tables, measure: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the variants that ran ok with the measure; those lost, warm or cold only, with their `status`/`_when`)."""
    if measure not in MEASURES:
        raise ValueError(f"figure {NAME!r}: measure {measure!r} is not one of {', '.join(MEASURES)}")
    df = require_rows(tables.get("timing"), NAME, "timing")
    if measure not in df.columns:
        raise ValueError(f"figure {NAME!r}: timing.csv has no {measure!r} column (written before issue 21)")
    df = prepare(df, NAME, "timing")
    status, cold = df["status"].astype(str), df["cold_status"].astype(str) if "cold_status" in df else ""
    lost = pd.concat([df[status.isin(LOST)].assign(_when=""),
                      df[(status == "ok") & pd.Series(cold, index=df.index).isin(LOST)].assign(status=cold,
                                                                                              _when="cold ")])
    df = df[(status == "ok") & df[measure].notna()].copy()
    if df.empty:
        raise ValueError(f"figure {NAME!r}: no timed variant ran ok")
    return df, lost


def _line(ax, line, measure: str, prefix: str, fam: str, style: dict, hollow: bool) -> bool:
    """One warm (prefix '') or cold (prefix 'cold_') line with its interval bars; False where nothing to draw."""
    col = f"{prefix}{measure}"
    line = line[line[col].notna()] if col in line.columns else line.iloc[0:0]
    if line.empty:
        return False
    x, y = line["compression_ratio"].to_numpy(float), line[col].to_numpy(float)
    err = [y - line[f"{col}_low"].to_numpy(float), line[f"{col}_high"].to_numpy(float) - y]
    face = dict(markerfacecolor="white") if hollow else {}
    drawn = ax.errorbar(x, y, yerr=err, capsize=2, lw=1.2, markersize=5, zorder=3, **style, **face)
    drawn.lines[0].set_gid(f"{prefix or 'warm_'}{fam}")
    return True


def _panel(ax, panel, fams, styles, measure: str, used: dict) -> None:
    base = panel[panel["method"] == "no_press"].head(1)
    for prefix, ls in (("", "-"), ("cold_", "--")):
        col = f"{prefix}{measure}"
        if len(base) and col in base.columns and base[col].notna().all():
            ax.axhline(float(base[col].iloc[0]), color=method_color("no_press"), ls=ls, lw=0.9, zorder=1)
    for method, fam in fams:
        line = panel[panel["family"] == fam].sort_values("compression_ratio")
        if method == "no_press" or line.empty:
            continue
        line = pd.concat([base.assign(compression_ratio=0.0), line])
        color, marker = method_color(method), method_marker(method)
        warm = _line(ax, line, measure, "", fam, dict(color=color, ls=styles[fam], marker=marker), False)
        cold = _line(ax, line, measure, "cold_", fam, dict(color=color, ls="--", marker=marker), True)
        if warm or cold:
            used.setdefault(fam, (method, color, marker))


def build(tables, measure: str = "run_seconds"):
    from matplotlib.lines import Line2D

    pts, lost = _points(tables, measure)
    models, lengths = sorted(pts["model"].unique()), sorted(pts["length"].unique())
    fams = families(pd.concat([pts, lost]))
    styles, labels, used = family_linestyles(fams), family_labels(fams), {}
    fig = new_figure(2.9 * len(lengths) + 2.2, 2.4 * len(models) + 0.7)
    axes = fig.subplots(len(models), len(lengths), squeeze=False, sharex=True)
    for (r, model), (c, length) in itertools.product(enumerate(models), enumerate(lengths)):
        ax = axes[r, c]
        where = lambda t: (t["model"] == model) & (t["length"] == length)  # noqa: E731
        _panel(ax, pts[where(pts)], fams, styles, measure, used)
        gone = lost[where(lost)]
        notes = [f"{when}{head} {', '.join(parts)}" for when in ("", "cold ")
                 for head, parts in note_groups(gone[gone["_when"] == when], labels)]
        ax.set_title("\n".join([row_title(model, length, len(models) > 1), *notes]))
        ax.set_xlim(-0.03, 1.0)
        ax.tick_params(labelbottom=True)
    has_cold = f"cold_{measure}" in pts.columns and pts[f"cold_{measure}"].notna().any()
    note = ("solid: warm (median of interleaved runs after a warm-up round)\ndashed, hollow: cold (first call "
            "after the model load, load excluded)" if has_cold else "warm runs only: the study times no cold runs "
            "(timing.cold)")
    fig.supxlabel(f"Compression ratio (nominal)\n{note}")
    fig.supylabel(MEASURES[measure])
    handles = [Line2D([], [], color=method_color("no_press"), ls="-", label="No press")]
    handles += [Line2D([], [], color=c, marker=m, ls=styles[f], label=labels[f]) for f, (_, c, m) in used.items()]
    if has_cold:
        handles += [Line2D([], [], color="grey", marker="o", ls="-", label="warm"),
                    Line2D([], [], color="grey", marker="o", ls="--", markerfacecolor="white", label="cold")]
    fig.legend(handles=handles, loc="outside right upper", title="Method")
    return fig
