"""The paper's main tables, as CSV and as LaTeX (booktabs), from results.csv and significance.csv.

- `summary_score`: score by press variant (rows, the `no_press` baseline first) x task (columns, plus the mean over
  higher-is-better tasks), one block per (model, context length); mean over seeds. Scores in [0, 1] of
  higher-is-better tasks are shown x 100. A cell is marked where the paired test against the baseline is
  significant after Holm in every seed (and all seeds agree on the direction): "better" / "worse" in the CSV's
  `<task>_mark` column, an up / down arrow in LaTeX. The mean's mark comes the same way from significance.csv's
  rows with task "mean": one stratified test over all paired samples of its tasks (`kvstudy.significance_mean`).
  A task's extra metrics and judged sub-scores (results.csv columns, kvstudy.metric_columns) follow its score as
  `<task>.<metric>` columns: their mean over seeds x 100, unmarked (the paired tests run on the score only: testing
  each extra metric too would add tests to every Holm family and change the score's corrected p-values); their
  spread over seeds is in `summary_seeds`.
- `summary_memory`: per (model, press variant) and context length: KV-cache MiB held (mean over tasks and seeds),
  its saving against the baseline's cache in the same cells in %, the % of KV tokens kept (where results.csv has
  `kv_fraction_kept`; masking presses keep few tokens but free no bytes) and peak device memory in GB.
- `summary_throughput`: per (model, press variant) and context length: decode tokens/s, time to first token and
  prefill tokens/s: the timing protocol's medians with their intervals where the study timed the variant at that
  length (`source@<length>` "timing", kvstudy.timing), else the eval jobs' means ("eval", no interval). A variant
  is marked faster or slower than no_press only where the two intervals do not overlap (kvstudy.intervals;
  docs/statistics.md, "Timings"); without intervals nothing is marked.
- `summary_seeds`: per (model, task, length, press variant) mean, std, min and max over seeds of the score and of
  decode tokens/s (kvstudy.summary_seeds).

A variant whose jobs all ran out of memory shows "OOM" (LaTeX) / an empty value marked "oom" (CSV), never a
number; one whose jobs failed (and none is ok) shows "failed" / "failed" the same way. Decoding presses (which
evict while generating) are placed at the cache they held at the end and compared with no_press's final cache
(results.csv `kv_bytes_held`, `kv_bytes_reference`, `effective_ratio`: kvstudy.cache_held). LaTeX comes from
pandas' Styler (booktabs rules via `hrules=True`), so nothing here formats TeX by hand except the cell text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kvstudy.aggregate import write_csv_atomic, write_text_atomic
from kvstudy.metric_columns import in_table
from kvstudy.pareto import higher_is_better
from kvstudy.significance_mean import MEAN_TASK
from kvstudy.summary_seeds import seeds_latex, seeds_table

BASELINE = "no_press"
NAMES = ("summary_score", "summary_memory", "summary_throughput", "summary_seeds")
_ID = {c: str for c in ("model", "task", "press", "method", "status")}
UP, DOWN = r"$^{\uparrow}$", r"$^{\downarrow}$"


def _variant_order(frame: pd.DataFrame) -> list[str]:
    """Baseline first, then methods in the figures' order, ratios ascending."""
    from kvstudy.plots.style import method_order

    v = frame[["press", "method", "compression_ratio"]].drop_duplicates("press")
    rank = {m: i for i, m in enumerate(method_order(v["method"].unique()))}
    v = v.assign(_b=v["press"] != BASELINE, _m=v["method"].map(rank))
    return v.sort_values(["_b", "_m", "compression_ratio", "press"])["press"].tolist()


def _lost(results: pd.DataFrame, keys: list[str]) -> dict[tuple, str]:
    """Keys (tuples) whose jobs include no ok one but an oom or failed one -> "oom" / "failed" ("failed" wins
    when both)."""
    status = results["status"].astype(str)
    per = (results.assign(_oom=status.eq("oom"), _failed=status.eq("failed"), _ok=status.eq("ok"))
           .groupby(keys)[["_oom", "_failed", "_ok"]].any())
    per = per[(per["_oom"] | per["_failed"]) & ~per["_ok"]]
    as_tuple = (lambda k: k if isinstance(k, tuple) else (k,))  # noqa: E731
    return {as_tuple(k): "failed" if f else "oom" for k, f in zip(per.index, per["_failed"])}


def _marks(significance: pd.DataFrame | None) -> dict[tuple, str]:
    """(model, task, length, press) -> "better" / "worse" where every seed's test is significant the same way."""
    if significance is None or significance.empty:
        return {}
    sig = significance.assign(better=significance["better"].fillna("").astype(str))
    out = {}
    for key, g in sig.groupby(["model", "task", "length", "press"]):
        kinds = set(g["better"])
        if len(kinds) == 1 and kinds <= {"better", "worse"}:
            out[(str(key[0]), str(key[1]), int(key[2]), str(key[3]))] = kinds.pop()
    return out


def score_table(results: pd.DataFrame, significance: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide score table: model, length, press, method, compression_ratio, then per task `<task>` and
    `<task>_mark`, and `mean` (over higher-is-better tasks, for variants that have all of them)."""
    results = results.assign(higher_is_better=higher_is_better(results.get("higher_is_better"), results.index))
    ok = results[results["status"].astype(str) == "ok"].copy()
    ok["score"] = pd.to_numeric(ok["score"], errors="coerce")
    tasks = list(dict.fromkeys(results["task"].astype(str)))
    hib = results.groupby("task")["higher_is_better"].first().to_dict()
    percent = {t: bool(hib[t]) and ok.loc[ok["task"] == t, "score"].between(0, 1).all() for t in tasks}
    means = ok.groupby(["model", "length", "press", "task"])["score"].mean()
    subs = _sub_means(ok, tasks)
    lost = _lost(results, ["model", "length", "press", "task"])
    marks = _marks(significance)
    rows = []
    for (model, length), block in results.groupby(["model", "length"], sort=True):
        for press in _variant_order(block):
            first = block[block["press"] == press].iloc[0]
            row = {"model": model, "length": int(length), "press": press, "method": first["method"],
                   "compression_ratio": float(first["compression_ratio"])}
            for task in tasks:
                value = means.get((model, length, press, task), np.nan)
                row[task] = value * 100 if percent[task] and pd.notna(value) else value
                mark = lost.get((model, length, press, task)) or marks.get((model, task, int(length), press), "")
                row[f"{task}_mark"] = mark
                for metric, values in subs.get(task, {}).items():  # extra metrics: the mean, x 100, no mark
                    row[f"{task}.{metric}"] = values.get((model, length, press), np.nan) * 100
            good = [t for t in tasks if hib[t]]
            if len(good) > 1:
                values = [row[t] for t in good]
                row["mean"] = float(np.mean(values)) if all(pd.notna(values)) else np.nan
                gone = [row[f"{t}_mark"] for t in good if row[f"{t}_mark"] in ("oom", "failed")]
                tested = marks.get((model, MEAN_TASK, int(length), press), "") if pd.notna(row["mean"]) else ""
                row["mean_mark"] = "failed" if "failed" in gone else "oom" if gone else tested
            rows.append(row)
    return pd.DataFrame(rows)


def _sub_means(ok: pd.DataFrame, tasks: list[str]) -> dict[str, dict[str, pd.Series]]:
    """task -> sub-score column it fills (a task's extra metrics, judged sub-scores; kvstudy.metric_columns) ->
    its mean over seeds per (model, length, press). Only the mean: the paired tests run on the score alone."""
    out: dict[str, dict[str, pd.Series]] = {}
    for col in in_table(ok.columns):
        values = pd.to_numeric(ok[col], errors="coerce")
        for task in tasks:
            mine = values[ok["task"] == task].dropna()
            if len(mine):
                out.setdefault(task, {})[col] = mine.groupby(
                    [ok.loc[mine.index, k] for k in ("model", "length", "press")]).mean()
    return out


def _efficiency(results: pd.DataFrame, measures: dict[str, tuple[str, float]]) -> pd.DataFrame:
    """Per (model, press, length): the given measures (column, scale), mean over tasks and seeds; OOM marked."""
    ok = results[results["status"].astype(str) == "ok"].copy()
    for col, _ in measures.values():
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    means = ok.groupby(["model", "press", "length"])[[c for c, _ in measures.values()]].mean()
    lost = _lost(results, ["model", "press", "length"])
    rows = []
    for model, block in results.groupby("model", sort=True):
        lengths = sorted(block["length"].astype(int).unique())
        for press in _variant_order(block):
            first = block[block["press"] == press].iloc[0]
            row = {"model": model, "press": press, "method": first["method"],
                   "compression_ratio": float(first["compression_ratio"])}
            for length in lengths:
                for name, (col, scale) in measures.items():
                    key = (model, press, length)
                    row[f"{name}@{length}"] = means[col].get(key, np.nan) * scale if key in means.index else np.nan
                row[f"status@{length}"] = lost.get((model, press, length)) or (
                    "ok" if (model, press, length) in means.index else "")
            rows.append(row)
    return pd.DataFrame(rows)


def memory_table(results: pd.DataFrame) -> pd.DataFrame:
    """KV MiB each variant held (decoding presses: at the end), its saving against no_press's cache in the same
    phase and cells (sum of held / sum of reference over the variant's ok jobs, so a hole in the grid does not
    bias it), % of KV tokens kept (decoding presses: 1 - the fraction they evicted) and peak memory."""
    results = _held(results)
    measures = {"kv_mib": ("kv_bytes_held", 1 / 2**20), "peak_gb": ("peak_memory_bytes", 1e-9)}
    if results["_kept"].notna().any():  # masking presses keep few tokens yet free no bytes: show both
        measures["kept_pct"] = ("_kept", 100.0)
    out = _efficiency(results, measures)
    ok = results[results["status"].astype(str) == "ok"]
    both = ok[["kv_bytes_held", "kv_bytes_reference"]].apply(pd.to_numeric, errors="coerce").dropna()
    sums = both.groupby([ok.loc[both.index, k] for k in ("model", "press", "length")]).sum()
    saving = (1 - sums["kv_bytes_held"] / sums["kv_bytes_reference"]) * 100
    for length in sorted(results["length"].astype(int).unique()):
        keys = zip(out["model"], out["press"], [length] * len(out))
        out[f"kv_saving_pct@{length}"] = [saving.get(k, np.nan) for k in keys]
    return out


def _held(results: pd.DataFrame) -> pd.DataFrame:
    """results with the cache_held columns (a results.csv from before them: every press at prefill) and `_kept`,
    the fraction of KV tokens kept: kv_fraction_kept, or 1 - effective_ratio for decoding presses."""
    if "kv_bytes_held" not in results.columns:
        base = results[(results["press"] == BASELINE) & (results["status"].astype(str) == "ok")]
        ref = pd.to_numeric(base["kv_bytes"], errors="coerce").groupby(
            [base["model"], base["task"], base["length"]]).mean().rename("kv_bytes_reference")
        results = results.join(ref, on=["model", "task", "length"]).assign(
            phase="prefill", kv_bytes_held=results["kv_bytes"], effective_ratio=results["compression_ratio"])
    kept = (pd.to_numeric(results["kv_fraction_kept"], errors="coerce") if "kv_fraction_kept" in results.columns
            else pd.Series(np.nan, index=results.index))
    decoding = results["phase"].astype(str).eq("decoding")
    return results.assign(_kept=kept.where(~decoding, 1 - pd.to_numeric(results["effective_ratio"], errors="coerce")))


def throughput_table(results: pd.DataFrame, timing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Decode tokens/s, TTFT ms and prefill tokens/s per (model, press variant) and length (module docstring)."""
    prefill = results["prefill_seconds"] if "prefill_seconds" in results.columns else np.nan  # older tables
    results = results.assign(_prefill_tps=results["length"].astype(float) / pd.to_numeric(prefill, errors="coerce"))
    out = _efficiency(results, {"decode_tps": ("decode_tokens_per_second", 1.0), "ttft_ms": ("ttft_seconds", 1e3),
                                "prefill_tps": ("_prefill_tps", 1.0)})
    lengths = [int(c.split("@")[1]) for c in out.columns if c.startswith("status@")]
    t = None
    if timing is not None and not timing.empty:
        t = timing[timing["status"].astype(str) == "ok"]
        t = t.set_index([t["model"].astype(str), t["press"].astype(str), t["length"].astype(int)])
    for length in lengths:
        bounds = {f"{n}_{b}@{length}": np.nan for n in ("decode_tps", "ttft_ms") for b in ("low", "high")}
        out = out.assign(**bounds, **{f"source@{length}": np.where(out[f"status@{length}"] == "ok", "eval", "")})
        for i, (model, press) in enumerate(zip(out["model"], out["press"])):
            key = (str(model), str(press), length)
            if t is None or key not in t.index or out.at[i, f"status@{length}"] != "ok":
                continue
            row = t.loc[key]
            for name, col, scale in _TIMED:
                for suffix in ("", "_low", "_high"):
                    if suffix == "" or name != "prefill_tps":
                        out.at[i, f"{name}{suffix}@{length}"] = float(row[f"{col}{suffix}"]) * scale
            out.at[i, f"source@{length}"] = "timing"
        _mark_against_baseline(out, length)
    per_length = ["decode_tps", "decode_tps_low", "decode_tps_high", "ttft_ms", "ttft_ms_low", "ttft_ms_high",
                  "prefill_tps", "decode_vs_baseline", "ttft_vs_baseline", "source", "status"]
    return out[["model", "press", "method", "compression_ratio"]
               + [f"{c}@{length}" for length in lengths for c in per_length]]


# summary_throughput name -> timing.csv column, scale
_TIMED = (("decode_tps", "decode_tokens_per_second", 1.0), ("ttft_ms", "ttft_seconds", 1e3),
          ("prefill_tps", "prefill_tokens_per_second", 1.0))


def _mark_against_baseline(out: pd.DataFrame, length: int) -> None:
    """`ttft_vs_baseline@L` / `decode_vs_baseline@L`: "faster" / "slower" than the model's no_press where the
    intervals do not overlap, else empty (kvstudy.intervals.compare)."""
    from kvstudy.intervals import compare

    for name, faster in (("ttft", -1), ("decode", 1)):  # lower TTFT is faster; higher tokens/s is faster
        col = "ttft_ms" if name == "ttft" else "decode_tps"
        marks = []
        for model, press, lo, hi in zip(out["model"], out["press"], out[f"{col}_low@{length}"],
                                        out[f"{col}_high@{length}"]):
            base = out[(out["model"] == model) & (out["press"] == BASELINE)]
            side = 0 if press == BASELINE or base.empty else compare(
                lo, hi, base[f"{col}_low@{length}"].iloc[0], base[f"{col}_high@{length}"].iloc[0])
            marks.append("" if side == 0 else "faster" if side == faster else "slower")
        out[f"{name}_vs_baseline@{length}"] = marks


# --- LaTeX ----------------------------------------------------------------------------------------------------


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _cell(value, mark: str = "", digits: int = 1) -> str:
    if mark == "oom":
        return "OOM"
    if mark == "failed":
        return "failed"
    if value is None or pd.isna(value):
        return "--"
    text = f"{value:.{digits}f}"
    return text + (DOWN if mark == "worse" else UP if mark == "better" else "")


def _to_latex(frame: pd.DataFrame, caption: str, label: str) -> str:
    """Booktabs LaTeX from pandas' Styler (cells already formatted as text)."""
    frame = frame.copy()
    frame.index = frame.index.set_names([_tex_escape(str(n)) if n else n for n in frame.index.names])
    index = frame.index.map(lambda k: tuple(_tex_escape(str(x)) for x in (k if isinstance(k, tuple) else (k,))))
    frame.index = pd.MultiIndex.from_tuples(index, names=frame.index.names) if frame.index.nlevels > 1 else \
        pd.Index([k[0] for k in index], name=frame.index.name)
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = pd.MultiIndex.from_tuples([tuple(_tex_escape(str(x)) for x in c) for c in frame.columns])
    else:
        frame.columns = [_tex_escape(str(c)) for c in frame.columns]
    styler = frame.style
    return styler.to_latex(hrules=True, caption=caption, label=label, position="t", position_float="centering",
                           multirow_align="t", multicol_align="c",
                           column_format="l" * frame.index.nlevels + "r" * frame.shape[1])


def score_latex(table: pd.DataFrame) -> str:
    tasks = [c for c in table.columns if f"{c}_mark" in table.columns and c != "mean"]
    cells = {}
    for t in tasks:
        cells[t] = [_cell(v, m) for v, m in zip(table[t], table[f"{t}_mark"])]
        for col in (c for c in table.columns if c.startswith(f"{t}.")):  # its extra metrics: lost cells as lost
            lost = [m if m in ("oom", "failed") else "" for m in table[f"{t}_mark"]]
            cells[f"{t} {col.split('.', 1)[1]}"] = [_cell(v, m) for v, m in zip(table[col], lost)]
    cells = pd.DataFrame(cells)
    if "mean" in table.columns:
        cells["Mean"] = [_cell(v, m) for v, m in zip(table["mean"], table["mean_mark"])]
    cells.index = pd.MultiIndex.from_arrays([table["model"], table["length"], table["press"]],
                                            names=["Model", "Length", "Press"])
    return _to_latex(cells, "Score by press variant and task (mean over seeds; $\\times 100$ for scores in [0, 1]). "
                     r"$\uparrow$/$\downarrow$: significantly better/worse than no press (paired test, Holm, "
                     r"$p<0.05$, in every seed; the mean: one test over the paired samples of all its tasks; a "
                     "task's extra metrics: their mean, untested); "
                     "OOM: out of memory; failed: the job raised (see results.csv).",
                     "tab:score")


def _efficiency_latex(table: pd.DataFrame, columns: dict[str, tuple], caption: str, label: str) -> str:
    """columns: key -> (title, digits[, mark column: "faster" / "slower" drawn as an up / down arrow])."""
    lengths = sorted({int(c.split("@")[1]) for c in table.columns if c.startswith("status@")})
    cells = {}
    for length in lengths:
        status = table[f"status@{length}"]
        for key, (title, digits, *mark) in columns.items():
            marks = table[f"{mark[0]}@{length}"] if mark else [""] * len(table)
            cells[(f"{length} tokens", title)] = [
                _cell(v, s if s in ("oom", "failed") else {"faster": "better", "slower": "worse"}.get(m, ""), digits)
                for v, s, m in zip(table[f"{key}@{length}"], status, marks)]
    frame = pd.DataFrame(cells)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index = pd.MultiIndex.from_arrays([table["model"], table["press"]], names=["Model", "Press"])
    return _to_latex(frame, caption, label)


def memory_latex(table: pd.DataFrame) -> str:
    columns = {"kv_mib": ("KV MiB", 2), "kv_saving_pct": ("saved %", 1)}
    if any(c.startswith("kept_pct@") for c in table.columns):
        columns["kept_pct"] = ("kept %", 1)
    peak = any(table[c].notna().any() for c in table.columns if c.startswith("peak_gb@"))
    if peak:  # measured on CUDA only (kvstudy.measure.PeakMemory): a CPU study has no peak column
        columns["peak_gb"] = ("peak GB", 2)
    return _efficiency_latex(
        table, columns,
        "KV-cache memory held (MiB, measured from the cache tensors; mean over tasks and seeds): after prefill, "
        "and at the end of generation for presses that evict while decoding; its saving against no press's "
        "cache at the same point, the fraction of KV tokens kept (a masking press keeps few tokens yet frees no "
        "bytes; a decoding press: 1 - the fraction it evicted)"
        + (", and peak device memory above the weights (GB)" if peak else
           " (no peak device memory: it is measured on CUDA only, never as a CPU process's lifetime RSS)")
        + " per context length; OOM: out of memory; failed: the job raised.", "tab:memory")


def throughput_latex(table: pd.DataFrame) -> str:
    sources = {v for c in table.columns if c.startswith("source@") for v in table[c] if v}
    how = ("medians of the timing protocol's runs (prefill plus a fixed number of decode tokens, after warm-up); "
           r"$\uparrow$/$\downarrow$: faster/slower than no press, their intervals apart"
           if sources == {"timing"} else
           "means over the eval jobs' samples (no timing protocol: one measurement each, no interval, nothing "
           "marked faster)" if sources <= {"eval"} else
           "medians of the timing protocol where it timed the variant (arrows: faster/slower than no press, "
           "intervals apart), else means over the eval jobs (no interval)")
    return _efficiency_latex(
        table, {"decode_tps": ("tok/s", 1, "decode_vs_baseline"), "ttft_ms": ("TTFT ms", 1, "ttft_vs_baseline"),
                "prefill_tps": ("prefill tok/s", 0)},
        f"Decode throughput (tokens/s), time to first token (ms) and prefill throughput (tokens/s) per context "
        f"length: {how}; OOM: out of memory; failed: the job raised.", "tab:throughput")


def summary_tables(results: pd.DataFrame, significance: pd.DataFrame | None, timing: pd.DataFrame | None = None
                   ) -> dict[str, tuple[pd.DataFrame, str]]:
    """name -> (CSV frame, LaTeX text) for the four summary tables."""
    score, memory = score_table(results, significance), memory_table(results)
    throughput = throughput_table(results, timing)
    order = _variant_order(results)
    seeds = seeds_table(results, order)
    return {
        "summary_score": (score, score_latex(score)),
        "summary_memory": (memory, memory_latex(memory)),
        "summary_throughput": (throughput, throughput_latex(throughput)),
        "summary_seeds": (seeds, seeds_latex(seeds, order, _cell, _to_latex)),
    }


def write_summary(results_csv: Path, significance_csv: Path | None, out_dir: Path, timing_csv: Path | None = None
                  ) -> list[Path]:
    """Write `<name>.csv` and `<name>.tex` for each summary table into out_dir; returns the paths."""
    results = pd.read_csv(results_csv, dtype=_ID)
    significance = None
    if significance_csv is not None and Path(significance_csv).exists():
        try:
            significance = pd.read_csv(significance_csv, dtype=_ID)
        except pd.errors.EmptyDataError:
            significance = None
    out_dir = Path(out_dir)
    paths = []
    from kvstudy.pareto import read_timing

    for name, (frame, tex) in summary_tables(results, significance, read_timing(timing_csv)).items():
        write_csv_atomic(frame, out_dir / f"{name}.csv")
        write_text_atomic(tex, out_dir / f"{name}.tex")
        paths += [out_dir / f"{name}.csv", out_dir / f"{name}.tex"]
    return paths
