"""Score difference to the baseline, press variants (rows) x tasks (columns), one panel per (model, context length),
from significance.csv (paired on the same samples), averaged over seeds.

The difference is signed so that positive means better: variant - baseline, times -1 for lower-is-better scores
(perplexity). A diverging colour map centred on 0, the value in each cell, and "*" where the paired test is
significant after Holm correction in every seed. A variant whose jobs ran out of memory (results.csv status "oom",
no paired test) is a hatched grey "OOM" cell, never a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots import Figure, register
from kvstudy.plots._common import OOM_TEXT_COLOR, as_bool, oom_variants, prepare, require_columns, require_rows
from kvstudy.plots._common import task_order, variant_label, families, family_labels
from kvstudy.plots.style import length_label, method_color, method_order, new_figure, task_label

NAME = "delta_heatmap"
CMAP = "RdBu"


def _signed(df: pd.DataFrame) -> pd.Series:
    hib = as_bool(df["higher_is_better"]) | df["higher_is_better"].isna() if "higher_is_better" in df else True
    return df["diff"].astype(float) * np.where(hib, 1.0, -1.0)


def build(tables):
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    df = require_rows(tables.get("significance"), NAME, "significance")
    require_columns(df, NAME, "significance", ["task", "length", "press", "diff", "significant"])
    df = prepare(df, NAME, "significance")
    df["task"] = df["task"].astype(str)
    df["delta"] = _signed(df)
    df["significant"] = as_bool(df["significant"])
    cells = df.groupby(["model", "length", "press", "task"]).agg(
        delta=("delta", "mean"), sig=("significant", "all"), method=("method", "first"),
        family=("family", "first"), compression_ratio=("compression_ratio", "first")).reset_index()
    oom = oom_variants(tables.get("results"), NAME)
    oom = oom[oom["method"] != "no_press"] if len(oom) else oom
    every = pd.concat([cells[["model", "length", "press", "task", "method", "family", "compression_ratio"]],
                       oom[["model", "length", "press", "task", "method", "family", "compression_ratio"]]],
                      ignore_index=True)
    if every.empty:
        raise ValueError(f"figure {NAME!r}: significance.csv has no paired comparison to plot")
    tasks = task_order(every["task"])
    fams = families(every)
    labels = family_labels(fams)
    order = {m: i for i, m in enumerate(method_order(every["method"].unique()))}
    variants = (every.drop_duplicates("press").assign(_m=lambda d: d["method"].map(order))
                .sort_values(["_m", "family", "compression_ratio"]))
    rows = [(p, variant_label(m, f, r, labels)) for p, m, f, r in
            zip(variants["press"], variants["method"], variants["family"], variants["compression_ratio"])]
    row_methods = list(variants["method"])
    panels = [(m, int(n)) for m in dict.fromkeys(every["model"])
              for n in sorted(every.loc[every["model"] == m, "length"].unique())]
    lim = float(np.nanmax(np.abs(cells["delta"]))) if len(cells) and np.isfinite(cells["delta"]).any() else 1.0
    lim = lim if lim > 0 else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    many_models = every["model"].nunique() > 1
    ncols = min(len(panels), 3)
    nrows = int(np.ceil(len(panels) / ncols))
    w = 1.15 * len(tasks) + 2.6
    h = max(0.36 * len(rows) + 1.2, 2.8)  # room for the colour bar's label with few rows
    fig = new_figure(w * ncols + 1.2, h * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    annotate = len(rows) * len(tasks) <= 200
    lookup = cells.set_index(["model", "length", "press", "task"])
    oom_keys = set(zip(oom["model"], oom["length"], oom["press"], oom["task"]))
    mesh = None
    for k, (model, length) in enumerate(panels):
        ax = axes[k]
        data = np.full((len(rows), len(tasks)), np.nan)
        sig = np.zeros_like(data, dtype=bool)
        for i, (press, _) in enumerate(rows):
            for j, task in enumerate(tasks):
                key = (model, length, press, task)
                if key in lookup.index:
                    data[i, j], sig[i, j] = lookup.loc[key, "delta"], lookup.loc[key, "sig"]
        mesh = ax.pcolormesh(np.arange(len(tasks) + 1), np.arange(len(rows) + 1), np.ma.masked_invalid(data),
                             cmap=CMAP, norm=norm, edgecolors="white", linewidth=0.5)
        for i, (press, _) in enumerate(rows):
            for j, task in enumerate(tasks):
                if (model, length, press, task) in oom_keys and np.isnan(data[i, j]):
                    ax.add_patch(Rectangle((j, i), 1, 1, facecolor="0.93", edgecolor="0.6", hatch="////", lw=0,
                                           gid="oom-cell"))
                    ax.text(j + 0.5, i + 0.5, "OOM", ha="center", va="center", fontsize=10, fontweight="bold",
                            color=OOM_TEXT_COLOR, gid="oom-label")
                elif annotate and np.isfinite(data[i, j]):
                    dark = abs(data[i, j]) > 0.6 * lim
                    ax.text(j + 0.5, i + 0.5, f"{data[i, j]:+.2f}" + ("*" if sig[i, j] else ""), ha="center",
                            va="center", fontsize=10, color="white" if dark else "black")
        ax.set_xlim(0, len(tasks))
        ax.set_ylim(len(rows), 0)
        ax.set_facecolor("0.97")
        ax.grid(False)
        ax.set_xticks(np.arange(len(tasks)) + 0.5, [task_label(t) for t in tasks], rotation=30, ha="right")
        ax.set_yticks(np.arange(len(rows)) + 0.5, [label for _, label in rows] if k % ncols == 0 else [])
        for tick, method in zip(ax.get_yticklabels(), row_methods):  # each press in its colour, as everywhere
            tick.set_color(method_color(method))
        ax.tick_params(length=0)
        title = f"{length_label(length)} tokens"
        ax.set_title(f"{model} · {title}" if many_models else title)
    for ax in axes[len(panels):]:
        ax.remove()
    cbar = fig.colorbar(mesh, ax=list(axes[:len(panels)]), shrink=0.8 if len(rows) > 8 else 1.0,
                        aspect=30 if len(rows) > 8 else 15, pad=0.02)
    cbar.set_label("Δ score (positive = better)")
    fig.suptitle("Score difference to no press (* significant after Holm, every seed)")
    return fig


def check(jobs, options):
    """Paired tests against no_press need both in one (model, task, length)."""
    from kvstudy.plots.specs import baseline_pairs

    return None if baseline_pairs(jobs) else ("needs a no_press baseline and a compressed variant of the same "
                                              "model, task and length (its cells are paired tests against no_press)")


register(Figure(NAME, "score difference to the baseline, variants x tasks per model x length, significance starred",
                ("significance", "results"), build, check=check))
