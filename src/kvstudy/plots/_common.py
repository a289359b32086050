"""Table preparation and layout helpers shared by the figure modules."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from kvstudy.plots.tables import as_bool, typed  # noqa: F401  (as_bool: for the figure modules)
from kvstudy.plots.press_style import family_suffix, is_quantized
from kvstudy.plots.press_style import style as press_style_of
from kvstudy.plots.press_style import variant_label as variant_label_of
from kvstudy.plots.style import length_label, method_label, method_order, press_family, ratio_label, task_label

_RATIO_IN_PRESS = re.compile(r"-cr(\d+(?:\.\d+)?)")


def require_rows(df: pd.DataFrame | None, figure: str, table: str) -> pd.DataFrame:
    if df is None or df.empty:
        raise ValueError(f"figure {figure!r}: {table}.csv has no rows, nothing to plot")
    return df


def require_columns(df: pd.DataFrame, figure: str, table: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"figure {figure!r}: {table}.csv lacks column(s) {', '.join(missing)}")


def prepare(df: pd.DataFrame, figure: str, table: str, measured: bool = False) -> pd.DataFrame:
    """Copy with `model`, `method`, `compression_ratio`, `family` (press variant without its ratio) filled in and
    numbers parsed. `method` and `compression_ratio` are read from the press name when the table lacks them.

    `measured`: figures that place variants along a compression-ratio axis put decoding presses at the fraction
    they really evicted (`effective_ratio`, kvstudy.cache_held), not at their nominal ratio (see `measured_ratio`).
    """
    if "press" not in df.columns and "method" not in df.columns:
        raise ValueError(f"figure {figure!r}: {table}.csv has neither a 'press' nor a 'method' column")
    df = typed(df)
    if "model" not in df.columns:
        df["model"] = ""
    df["model"] = df["model"].fillna("").astype(str)
    if "press" not in df.columns:
        df["press"] = df["method"]
    df["press"] = df["press"].astype(str)
    if "method" not in df.columns:
        df["method"] = df["press"].str.split("-").str[0]
    df["method"] = df["method"].astype(str)
    # the baseline is the `no_press` variant itself; `no_press-qa` or `no_press+int4` are methods of their own
    other = df["method"].eq("no_press") & df["press"].ne("no_press")
    df.loc[other, "method"] = df.loc[other, "press"]
    if "compression_ratio" not in df.columns:
        df["compression_ratio"] = df["press"].str.extract(_RATIO_IN_PRESS, expand=False)
    df["compression_ratio"] = pd.to_numeric(df["compression_ratio"], errors="coerce")
    if measured:
        df = measured_ratio(df, figure)
    df["compression_ratio"] = df["compression_ratio"].fillna(0.0).round(6)
    df.loc[df["method"] == "no_press", "compression_ratio"] = 0.0
    df["family"] = [m if m == "no_press" else press_family(p) for m, p in zip(df["method"], df["press"])]
    if "length" in df.columns:
        df = df[df["length"].notna()].copy()
        df["length"] = df["length"].astype(int)
    return df


def is_decoding(df: pd.DataFrame) -> pd.Series:
    """Rows of presses that evict while generating (results.csv / pareto.csv `phase`)."""
    if "phase" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["phase"].astype(str).eq("decoding")


def measured_ratio(df: pd.DataFrame, figure: str) -> pd.DataFrame:
    """Decoding presses at the fraction of the cache they really evicted: `compression_ratio` := the mean
    `effective_ratio` of the variant in its (model, task, length) cell (seeds evict slightly different amounts).
    A decoding variant without one (its cell has no ok no_press to compare with) cannot be placed: it is left
    out, and said so on stderr. Decoding variants that never ran (oom, failed) keep their nominal ratio."""
    decoding = is_decoding(df)
    if not decoding.any() or "effective_ratio" not in df.columns:
        return df
    keys = [k for k in ("model", "task", "length", "press") if k in df.columns]
    measured = pd.to_numeric(df["effective_ratio"], errors="coerce").groupby([df[k] for k in keys]).transform("mean")
    ok = df["status"].astype(str).eq("ok") if "status" in df.columns else pd.Series(True, index=df.index)
    # a decoding variant that never ran (oom, failed) evicted nothing measurable: it stays at its nominal ratio
    df = df.assign(compression_ratio=df["compression_ratio"].where(~(decoding & ok), measured.round(6)))
    unplaced = decoding & ok & df["compression_ratio"].isna()
    if unplaced.any():
        import sys

        names = ", ".join(sorted(set(df.loc[unplaced, "press"])))
        print(f"figure {figure!r}: warning: decoding press(es) {names} have no measured ratio (no ok no_press in "
              "their cell) and are left out", file=sys.stderr)
    return df[~unplaced]


def scored(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a score (status "ok" where the table has a status)."""
    keep = df["score"].notna()
    if "status" in df.columns:
        keep &= df["status"].fillna("ok").astype(str).eq("ok")
    return df[keep]


def task_order(tasks) -> list[str]:
    """Tasks in order of first appearance, `mean` last."""
    seen = list(dict.fromkeys(str(t) for t in tasks))
    return [t for t in seen if t != "mean"] + (["mean"] if "mean" in seen else [])


def row_keys(df: pd.DataFrame) -> list[tuple[str, int]]:
    """(model, length) pairs, models in order of appearance, lengths ascending."""
    models = list(dict.fromkeys(df["model"]))
    return [(m, int(n)) for m in models for n in sorted(df.loc[df["model"] == m, "length"].unique())]


def families(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, family) pairs in the fixed method order; families of one method alphabetically."""
    out = []
    for method in method_order(df["method"].unique()):
        for fam in sorted(df.loc[df["method"] == method, "family"].unique()):
            out.append((method, fam))
    return out


def family_labels(fams: list[tuple[str, str]]) -> dict[str, str]:
    """Legend label per family: the method's name, then what a variant adds (always: "+ int4", "(query-aware)";
    a quantized StreamingLLM is never plain "StreamingLLM"), and its other parameters where a method has several
    families that differ in them ("SnapKV (ws64)")."""
    cores: dict[str, set] = {}
    for method, fam in fams:
        cores.setdefault(method, set()).add(_core(fam))
    labels = {}
    for method, fam in fams:
        label = method_label(method)
        params = _core(fam)[len(method):].lstrip("-") if _core(fam).startswith(method) else _core(fam)
        if len(cores[method]) > 1 and params:
            label = f"{label} ({params})"
        quant, qa = family_suffix(fam)
        if fam != method:  # a method such as `no_press+int4` already says it
            label = variant_label_of(label, quant, qa)
        labels[fam] = label
    return labels


def _core(fam: str) -> str:
    """A family without its variant options: `knorm-ws64-qa+int4` -> `knorm-ws64`."""
    quant, qa = family_suffix(fam)
    core = fam[: -len(quant) - 1] if quant else fam
    return core[:-3] if qa else core


def family_rank(fams: list[tuple[str, str]]) -> dict[str, int]:
    """0 for a method's first family, 1 for its second, ..."""
    count: dict[str, int] = {}
    ranks = {}
    for method, fam in fams:
        ranks[fam] = count.get(method, 0)
        count[method] = ranks[fam] + 1
    return ranks


LINESTYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))


def family_linestyles(fams: list[tuple[str, str]]):
    """Solid for a method's first family, then other styles (dashed is kept for the no-press reference)."""
    return {fam: LINESTYLES[rank % len(LINESTYLES)] for fam, rank in family_rank(fams).items()}


def row_title(model: str, length: int, many_models: bool) -> str:
    text = f"{length_label(length)} tokens"
    return f"{model} · {text}" if many_models and model else text


def panel_title(task: str, model: str, length: int, many_models: bool) -> str:
    """"NIAH · 1K tokens"; with several models on two lines: "NIAH\nllama · 1K tokens"."""
    sep = "\n" if many_models and model else " · "
    return f"{task_label(task)}{sep}{row_title(model, length, many_models)}"


def finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


# --- jobs without a score: out of memory, failed ------------------------------------------------------------

OOM_LABEL = "OOM (out of memory)"
OOM_COLOR = "#d00000"  # the cross over an OOM marker: a pure red, apart from every method colour
OOM_TEXT_COLOR = "#a00000"
FAILED_LABEL = "failed (job error, see results.csv)"
FAILED_COLOR = "#000000"  # the cross over a failed marker: black, apart from OOM's red
FAILED_TEXT_COLOR = "#202020"
HATCH = {"oom": "////", "failed": "xxxx"}  # heatmap cells
CELL_TEXT = {"oom": "OOM", "failed": "failed"}
TEXT_COLOR = {"oom": OOM_TEXT_COLOR, "failed": FAILED_TEXT_COLOR}
CROSS_COLOR = {"oom": OOM_COLOR, "failed": FAILED_COLOR}
LOST_LABEL = {"oom": OOM_LABEL, "failed": FAILED_LABEL}
_VARIANT_KEYS = ["model", "task", "length", "press", "method", "family", "compression_ratio", "status"]


def lost_variants(results: pd.DataFrame | None, figure: str) -> pd.DataFrame:
    """Press variants with no score: one row per (model, task, length, press) (with `method`, `family`,
    `compression_ratio`, and `status` "oom" or "failed") whose jobs include an "oom" or a "failed" one and no "ok"
    one ("failed" where both). Such a variant has no score and no measures, so a figure shows it as OOM or
    failed, never as a value. Empty when `results` is missing or has no `status`.
    """
    empty = pd.DataFrame(columns=_VARIANT_KEYS)
    if results is None or results.empty or "status" not in results.columns:
        return empty
    require_columns(results, figure, "results", ["task", "length"])
    df = results if "family" in results.columns else prepare(results, figure, "results")
    status = df["status"].fillna("").astype(str).str.strip().str.lower()
    df = df.assign(_oom=status.eq("oom"), _failed=status.eq("failed"), _ok=status.eq("ok"),
                   task=df["task"].astype(str))
    keys = ["model", "task", "length", "press"]
    per = df.groupby(keys, sort=False).agg(
        method=("method", "first"), family=("family", "first"), compression_ratio=("compression_ratio", "first"),
        any_oom=("_oom", "any"), any_failed=("_failed", "any"), any_ok=("_ok", "any"),
    ).reset_index()
    per = per[(per["any_oom"] | per["any_failed"]) & ~per["any_ok"]]
    per = per.assign(status=np.where(per["any_failed"], "failed", "oom"))
    return per[_VARIANT_KEYS].reset_index(drop=True)


def lost_legend_handles(statuses, marker_handle) -> list[tuple[str, object]]:
    """Legend entries (label, handle) for the kinds of lost variants drawn: `marker_handle(status)` gives each
    its handle, in the order OOM, failed."""
    return [(LOST_LABEL[s], marker_handle(s)) for s in ("oom", "failed") if s in set(statuses)]


def variant_label(method: str, family: str, ratio: float, labels: dict[str, str]) -> str:
    """"SnapKV 0.50", "No press": a press variant as the legend names it, with its ratio."""
    label = labels.get(family) or method_label(method)
    if not press_style_of(method).has_ratio:
        return label
    quant = family_suffix(family)[0]
    tail = f" + {quant}" if quant and label.endswith(f" + {quant}") else ""  # "Knorm 0.50 + int4"
    return f"{label[:len(label) - len(tail)]} {ratio_label(ratio)}{tail}"


def memory_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Quantized variants (a quantizing method, or a `+int4` variant) at the fraction of KV memory they save,
    1 - kv_bytes_held / kv_bytes_reference; where the bytes are missing (an OOM job), their nominal ratio."""
    if not {"kv_bytes_held", "kv_bytes_reference"} <= set(df.columns):
        return df
    quant = np.array([is_quantized(m, p) for m, p in zip(df["method"], df["press"])], dtype=bool)
    saved = 1 - pd.to_numeric(df["kv_bytes_held"], errors="coerce") / pd.to_numeric(df["kv_bytes_reference"],
                                                                                    errors="coerce")
    return df.assign(compression_ratio=df["compression_ratio"].where(~quant | saved.isna(), saved.round(3)))


def cross_out(ax, x: float, y: float, status: str, color: str, marker, hollow: bool = False, gid: str = "",
              transform=None) -> None:
    """A lost variant's mark: its method's marker (hollow for a method's other variants) under a cross, red for
    OOM, black for failed; gids `<status>:<gid>` and `<status>-cross:<gid>`."""
    where = {} if transform is None else {"transform": transform}
    ax.plot([x], [y], ls="none", zorder=5, clip_on=False, gid=f"{status}:{gid}", **where,
            **lost_marker_style(color, marker, hollow))
    ax.plot([x], [y], ls="none", zorder=6, clip_on=False, gid=f"{status}-cross:{gid}", **where, **cross_style(status))


def cross_style(status: str) -> dict:
    """The cross over a lost variant's marker: red for OOM, black for failed."""
    return dict(marker="x", markersize=8.5, markeredgecolor=CROSS_COLOR[status], markeredgewidth=1.1)


def lost_marker_style(color: str, marker, hollow: bool) -> dict:
    """The method's own marker, a little larger than on its line, under the cross."""
    return dict(marker=marker, markersize=7, markerfacecolor="white" if hollow else color,
                markeredgecolor=color if hollow else "white", markeredgewidth=1.3 if hollow else 0.5)


def lost_handle(status: str):
    """The legend entry of a kind of lost variant: a grey marker under its cross."""
    from matplotlib.lines import Line2D

    return (Line2D([], [], ls="none", **lost_marker_style("0.45", "o", False)),
            Line2D([], [], ls="none", **cross_style(status)))
