"""Options of the Pareto figures (pareto_memory, pareto_latency) beyond their default grid (kvstudy.plots._pareto):

- `models`, `methods`, `tasks`: draw only these (the log's "filtered versions"); `no_press` stays as the reference.
- `together: true`: every model of a task in one panel (the log's figure 3, rerank with all models), one panel per
  task, score against the figure's own cost.
- `layout: 1x2`: score against KV memory and against time to first token side by side; `layout: 2x2` adds time to
  first token against memory (the log's figure 1, the three measures of one task, by default the task mean).

In `together` and `layout` panels a colour is a model (`colour_by: model`, the log's) or a method
(`colour_by: method`) and the marker the other; a model's points of one press family are joined in cost order.
No front is drawn there (fronts are per model: pareto.csv's flags do not compare models); variants that ran out of
memory or failed are listed in a note in the panel, never drawn as points. These panels show one context length,
the longest (study 1 runs one).
"""

from __future__ import annotations

import pandas as pd

from kvstudy.plots._common import families, family_labels, prepare, require_columns, require_rows, task_order
from kvstudy.plots._pareto import _oom_panels, _score_axis, _x_axis, build_front, note_groups
from kvstudy.plots._placement import place_labels_and_notes
from kvstudy.plots.press_style import _SPARE_COLORS
from kvstudy.plots.style import (byte_unit, length_label, method_color, method_label, method_marker,
                                 method_order, new_figure, seconds_unit, task_label)

# measure -> (pareto.csv column, unit function, axis label)
MEASURES = {"memory": ("kv_bytes", byte_unit, "KV cache memory"),
            "latency": ("latency_seconds", seconds_unit, "Time to first token")}
# layout -> (rows, columns, [(x measure, y measure)] per panel; the last cell of 2x2 holds the legend)
LAYOUTS = {"1x2": (1, 2, [("memory", "score"), ("latency", "score")]),
           "2x2": (2, 2, [("memory", "score"), ("latency", "score"), ("memory", "latency")])}
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def filtered(tables: dict, name: str, models=None, methods=None, tasks=None) -> dict:
    """`tables` with pareto.csv and results.csv cut to `models`, `methods` (no_press kept) and `tasks` (pareto.csv's
    task mean dropped with `tasks`: it averages over every task)."""
    out = dict(tables)
    for key in ("pareto", "results"):
        df = tables.get(key)
        if df is None:
            continue
        keep = pd.Series(True, index=df.index)
        if models is not None:
            keep &= df["model"].astype(str).isin([str(m) for m in models])
        if methods is not None:
            keep &= prepare(df, name, key)["method"].reindex(df.index).isin([*map(str, methods), "no_press"])
        if tasks is not None:
            keep &= df["task"].astype(str).isin([str(t) for t in tasks])
        out[key] = df[keep]
    return out


def build_view(tables, name: str, own: str, layout=None, together=False, colour_by="model", models=None,
               methods=None, tasks=None, **front_args):
    """The figure `name` (its cost `own`: memory or latency) with the options above; without `layout` or
    `together` the default grid of kvstudy.plots._pareto (`front_args` are build_front's)."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"figure {name!r}: option layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if colour_by not in ("model", "method"):
        raise ValueError(f"figure {name!r}: option colour_by: {colour_by!r} is not model or method")
    if layout is not None and tasks is not None and len(tasks) != 1:
        raise ValueError(f"figure {name!r}: option layout draws one task (tasks: {list(tasks)})")
    tables = filtered(tables, name, models, methods, tasks)
    if layout is None and not together:
        return build_front(tables, name, **front_args)
    df = require_rows(tables.get("pareto"), name, "pareto")
    require_columns(df, name, "pareto", ["task", "length", "score", "kv_bytes", "latency_seconds"])
    df = prepare(df, name, "pareto", measured=True)
    df = df[df["score"].notna()]
    df = df[df["length"] == df["length"].max()]  # one length per panel: the longest (study 1 has one)
    if df.empty:
        raise ValueError(f"figure {name!r}: pareto.csv has no scored row (after the models/methods/tasks options)")
    order = task_order(df["task"])
    if layout is not None:  # one task: the one asked for, else the task mean (the only task where there is one)
        rows, cols, pairs = LAYOUTS[layout]
        return _draw(tables, name, df, rows, cols, [(pair, order[-1]) for pair in pairs], colour_by)
    shown = [t for t in order if t != "mean"] or order
    return _draw(tables, name, df, 1, len(shown), [((own, "score"), t) for t in shown], colour_by)


def _unit(measure: str, values: pd.Series) -> tuple[str, float]:
    unit = MEASURES[measure][1]
    return unit(float(values.max())) if len(values) else ("", 1.0)


def _styles(df: pd.DataFrame, colour_by: str) -> tuple[dict, dict]:
    """(colour per model or method, marker per method or model): the log's one colour per model by default."""
    models = list(dict.fromkeys(df["model"]))
    methods = method_order(df["method"].unique())
    if colour_by == "model":
        return ({m: _SPARE_COLORS[i % len(_SPARE_COLORS)] for i, m in enumerate(models)},
                {m: method_marker(m) for m in methods})
    return {m: method_color(m) for m in methods}, {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in
                                                    enumerate(models)}


def _draw(tables, name, df, rows, cols, panels, colour_by):
    """`panels` [((x measure, y measure), task)] on a rows x cols grid, a legend of colours and markers."""
    from matplotlib.lines import Line2D

    colours, markers = _styles(df, colour_by)
    fig = new_figure(3.6 * cols + 2.4, 3.0 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lost = _oom_panels(tables.get("results"), sorted({t for _, t in panels}), df, name)
    lost = lost[lost["length"].astype(int) == int(df["length"].iloc[0])]  # the length the panels draw
    notes = []
    for ax, ((xm, ym), task) in zip(axes, panels):
        drawn = _panel(ax, df[df["task"] == task], xm, ym, colours, markers, colour_by)
        ax.set_title(f"{task_label(task) if task != 'mean' else 'Mean over tasks'} · "
                     f"{length_label(df['length'].iloc[0])}")
        groups = _lost_groups(lost[lost["task"] == task])
        if groups:
            notes.append((ax, drawn, groups))
    for ax in axes[len(panels):]:
        ax.axis("off")  # 2x2: the fourth cell is left to the legend
    by, other = ("Model", "Method") if colour_by == "model" else ("Method", "Model")
    colour_name, marker_name = (str, method_label) if colour_by == "model" else (method_label, str)
    handles = [Line2D([], [], ls="-", marker="o", color=c, label=colour_name(k)) for k, c in colours.items()]
    handles += [Line2D([], [], ls="none", marker=mk, color="0.3", label=marker_name(k)) for k, mk in markers.items()]
    fig.legend(handles=handles, loc="outside right upper", title=f"{by} (colour), {other} (marker)",
               alignment="left")
    place_labels_and_notes(fig, [], notes, 1.0)  # last: each note in a free corner, needs the final layout
    return fig


def _lost_groups(lost: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """A panel's note: [("OOM:", ["m: SnapKV 0.50", ...]), ("failed:", ...)], each variant named with its model."""
    groups: dict[str, list[str]] = {}
    for model, sub in lost.groupby("model", sort=False):
        for kind, parts in note_groups(sub, family_labels(families(sub))):
            groups.setdefault(kind, []).extend(f"{model}: {part}" for part in parts)
    return list(groups.items())


def _panel(ax, panel, xm, ym, colours, markers, colour_by):
    """One panel: every (model, press family) as points joined in x order; x and y are measures. Returns the
    points as drawn (`x`, `score`: the y value; what the OOM note must not cover)."""
    xs, (xunit, xscale), drawn = panel[MEASURES[xm][0]], _unit(xm, panel[MEASURES[xm][0]]), []
    for (model, fam), pts in panel.groupby(["model", "family"], sort=False):
        method = pts["method"].iloc[0]
        colour = colours[model if colour_by == "model" else method]
        marker = markers[method if colour_by == "model" else model]
        pts = pts.sort_values(MEASURES[xm][0])
        y = pts["score"] if ym == "score" else pts[MEASURES[ym][0]] / _unit(ym, panel[MEASURES[ym][0]])[1]
        ax.plot(pts[MEASURES[xm][0]] / xscale, y, color=colour, marker=marker, lw=0.8, alpha=0.85, ms=6,
                gid=f"series:{model}:{fam}")
        drawn.append(pd.DataFrame({"x": (pts[MEASURES[xm][0]] / xscale).to_numpy(float), "score": y.to_numpy(float)}))
    if ym == "score":
        _score_axis(ax, panel, bool(panel["score"].between(0, 1).all()), _lower(panel))
    else:
        ax.set_ylabel(f"{MEASURES[ym][2]} ({_unit(ym, panel[MEASURES[ym][0]])[0]})")
    if len(xs.dropna()):
        lo, hi = float(xs.min()) / xscale, float(xs.max()) / xscale
        _x_axis(ax, lo, hi, lo > 0 and hi > 10 * lo)
    ax.set_xlabel(f"{MEASURES[xm][2]} ({xunit})")
    return pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame(columns=["x", "score"])


def _lower(panel) -> bool:
    from kvstudy.plots.tables import lower_is_better

    return bool(len(panel)) and bool(lower_is_better(panel).all())
