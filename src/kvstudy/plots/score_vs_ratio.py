"""Score vs compression ratio: one panel per task (columns) x context length (rows), one line per method.

Scores are means over seeds (a band of +-1 s.d. where there are several seeds). The no-press score is drawn as a
dashed horizontal reference in each panel and as the ratio-0 point of every method's line, so each curve starts
from the uncompressed baseline.
"""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from kvstudy.plots import Figure, register
from kvstudy.plots._common import (
    families,
    family_labels,
    family_linestyles,
    family_rank,
    panel_title,
    prepare,
    require_columns,
    require_rows,
    row_keys,
    scored,
    task_order,
)
from kvstudy.plots.style import metric_label, method_color, method_marker, new_figure

NAME = "score_vs_ratio"


def _marker_style(color: str, hollow: bool) -> dict:
    """A method's first variant: filled markers; its other parameter variants: hollow ones."""
    if hollow:
        return {"markerfacecolor": "white", "markeredgecolor": color, "markeredgewidth": 1.3}
    return {"markerfacecolor": color, "markeredgecolor": "white", "markeredgewidth": 0.5}


def build(tables):
    df = require_rows(tables.get("results"), NAME, "results")
    require_columns(df, NAME, "results", ["task", "length", "score"])
    df = scored(prepare(df, NAME, "results"))
    if df.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no job with status 'ok' and a score")

    keys = ["model", "task", "length", "method", "family", "compression_ratio"]
    agg = df.groupby(keys, sort=False)["score"].agg(["mean", "std", "count"]).reset_index()
    if not (agg["method"] != "no_press").any():
        raise ValueError(f"figure {NAME!r}: results.csv has only no_press jobs, no compressed variant to plot")

    tasks = task_order(agg["task"])
    rows = row_keys(agg)
    many_models = agg["model"].nunique() > 1
    fams = families(agg)
    labels = family_labels(fams)
    styles = family_linestyles(fams)
    ranks = family_rank(fams)
    metrics = {}
    if "metric" in df.columns:
        for task in tasks:
            found = df.loc[(df["task"] == task) & df["metric"].notna(), "metric"].unique()
            metrics[task] = str(found[0]) if len(found) == 1 else None
    one_metric = len(set(metrics.values())) <= 1

    ncols, nrows = len(tasks), len(rows)
    fig = new_figure(2.9 * ncols + 2.0, 2.3 * nrows + 0.5)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False))
    used: dict[str, tuple] = {}  # legend label -> handle
    baseline_drawn = False
    for r, (model, length) in enumerate(rows):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            panel = agg[(agg["model"] == model) & (agg["task"] == task) & (agg["length"] == length)]
            if panel.empty or not (panel["method"] != "no_press").any():
                ax.remove()
                continue
            base = panel.loc[panel["method"] == "no_press", "mean"]
            baseline = float(base.mean()) if len(base) else None
            if baseline is not None:
                ax.axhline(baseline, color=method_color("no_press"), ls="--", lw=1.0, zorder=1)
            for method, fam in fams:
                if method == "no_press":
                    continue
                line = panel[panel["family"] == fam].sort_values("compression_ratio")
                line = line[line["compression_ratio"] > 0]
                if line.empty:
                    continue
                x = line["compression_ratio"].to_numpy(float)
                y = line["mean"].to_numpy(float)
                sd = line["std"].fillna(0.0).to_numpy(float)
                if baseline is not None:
                    x, y, sd = np.r_[0.0, x], np.r_[baseline, y], np.r_[0.0, sd]
                color = method_color(method)
                marker_style = dict(marker=method_marker(method), **_marker_style(color, ranks[fam] > 0))
                ax.plot(x, y, color=color, ls=styles[fam], markevery=slice(1 if baseline is not None else 0, None),
                        zorder=3, clip_on=False, **marker_style)
                if (line["count"] > 1).any():
                    ax.fill_between(x, np.clip(y - sd, 0, 1), np.clip(y + sd, 0, 1), color=color, alpha=0.1,
                                    lw=0, zorder=2)
                used.setdefault(labels[fam], Line2D([], [], color=color, ls=styles[fam], **marker_style))
            if baseline is not None:
                ax.plot([0.0], [baseline], ls="none", marker=method_marker("no_press"),
                        color=method_color("no_press"), markeredgecolor="white", markeredgewidth=0.5, zorder=4,
                        clip_on=False)
                baseline_drawn = True
            title = panel_title(task, model, length, many_models)
            if not one_metric and metrics.get(task):
                ax.set_ylabel(metric_label(metrics[task]))
            ax.set_title(title)
            ax.set_ylim(0.0, 1.02)
            ax.set_xlim(-0.03, 1.0)
            ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
            ax.set_xticklabels(["0", "0.25", "0.5", "0.75", "1"])
            ax.tick_params(labelbottom=True, labelleft=True)

    if not fig.axes:
        raise ValueError(f"figure {NAME!r}: no (task, length) panel has a compressed variant with a score")
    fig.supxlabel("Compression ratio")
    fig.supylabel(metric_label(next(iter(metrics.values()), None)) if one_metric else "Score")

    handles = []
    if baseline_drawn:
        handles.append(("No press", Line2D([], [], color=method_color("no_press"), ls="--", lw=1.0,
                                           marker=method_marker("no_press"), markeredgecolor="white")))
    handles += [(labels[fam], used[labels[fam]]) for _, fam in fams if labels[fam] in used]
    fig.legend([h for _, h in handles], [label for label, _ in handles], loc="outside right upper",
               title="Method", alignment="left")
    return fig


register(Figure(NAME, "score vs compression ratio per task x length, one line per method", ("results",), build))
