"""Score difference to the baseline, press variants (rows) x tasks (columns), one panel per (model, context length),
averaged over seeds, significance from significance.csv.

The difference is the job scores' of results.csv (variant - no_press in the same cell and seed, then the mean over
seeds), so a perplexity cell shows the difference of corpus perplexities exp(mean NLL), as every table does; it
is signed so that positive means better (times -1 for lower-is-better scores). A diverging colour map centred on
0, the value in each cell, and "*" where the paired test of significance.csv is significant after Holm correction
in every seed. A variant whose jobs ran out of memory (results.csv status "oom") is a hatched grey "OOM" cell, one
whose jobs failed a cross-hatched "failed" cell, never a value; a cell the study did not run stays blank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.plots._common import CELL_TEXT, HATCH, TEXT_COLOR, as_bool, lost_variants, prepare, require_columns
from kvstudy.plots._common import require_rows, scored, task_order, variant_label, families, family_labels
from kvstudy.plots.style import length_label, method_color, method_order, new_figure, task_label

NAME = "delta_heatmap"
CMAP = "RdBu"
_CELL = ["model", "length", "press", "task"]


def _deltas(results: pd.DataFrame, significance: pd.DataFrame) -> pd.DataFrame:
    """Per (model, length, press, task): the signed mean over seeds of variant - no_press job scores, and
    whether every seed's paired test is significant."""
    ok = scored(results)
    hib = as_bool(ok["higher_is_better"]) | ok["higher_is_better"].isna() if "higher_is_better" in ok else True
    ok = ok.assign(_sign=np.where(hib, 1.0, -1.0))
    per_seed = ok.groupby([*_CELL, "seed"]).agg(score=("score", "mean"), method=("method", "first"),
                                                family=("family", "first"), sign=("_sign", "first"),
                                                compression_ratio=("compression_ratio", "first")).reset_index()
    base = per_seed[per_seed["press"] == "no_press"].set_index(["model", "length", "task", "seed"])["score"]
    var = per_seed[per_seed["press"] != "no_press"].join(base.rename("base"), on=["model", "length", "task", "seed"])
    var = var.dropna(subset=["base"]).assign(delta=lambda d: (d["score"] - d["base"]) * d["sign"])
    cells = var.groupby(_CELL).agg(delta=("delta", "mean"), method=("method", "first"), family=("family", "first"),
                                   compression_ratio=("compression_ratio", "first")).reset_index()
    sig = pd.Series(dtype=bool)
    if significance is not None and len(significance):
        require_columns(significance, NAME, "significance", ["task", "length", "press", "significant"])
        s = prepare(significance, NAME, "significance").assign(task=lambda d: d["task"].astype(str))
        sig = as_bool(s["significant"]).groupby([s[k] for k in _CELL]).all()
    return cells.assign(sig=[bool(sig.get(k, False)) for k in zip(*(cells[c] for c in _CELL))])


def build(tables):
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    results = require_rows(tables.get("results"), NAME, "results")
    require_columns(results, NAME, "results", ["task", "length", "press", "score", "status"])
    results = prepare(results, NAME, "results").assign(task=lambda d: d["task"].astype(str))
    cells = _deltas(results, tables.get("significance"))
    oom = lost_variants(results, NAME)
    oom = oom[oom["method"] != "no_press"] if len(oom) else oom
    keys = ["model", "length", "press", "task", "method", "family", "compression_ratio"]
    every = pd.concat([cells[keys], oom[keys]], ignore_index=True)
    if every.empty:
        raise ValueError(f"figure {NAME!r}: results.csv has no variant with a no_press job in its cell to compare")
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
    oom_keys = dict(zip(zip(oom["model"], oom["length"], oom["press"], oom["task"]), oom["status"]))
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
                lost = oom_keys.get((model, length, press, task))
                if lost and np.isnan(data[i, j]):
                    ax.add_patch(Rectangle((j, i), 1, 1, facecolor="0.93", edgecolor="0.6", hatch=HATCH[lost], lw=0,
                                           gid=f"{lost}-cell"))
                    ax.text(j + 0.5, i + 0.5, CELL_TEXT[lost], ha="center", va="center", fontsize=10,
                            fontweight="bold", color=TEXT_COLOR[lost], gid=f"{lost}-label")
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
