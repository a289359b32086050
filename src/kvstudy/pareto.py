"""Pareto fronts of quality against KV memory and latency, per task and averaged over tasks.

The score is maximised, or minimised where results.csv says `higher_is_better` is false (perplexity). The task
mean ("mean") averages only higher-is-better tasks: a mean of accuracies and perplexities means nothing.

Peak memory (CUDA: the allocator's peak above the weights; none on CPU, where `front_peak_memory` is all false) is
the timing protocol's median where it timed the variant at that length, as latency, else the eval jobs' mean.

Memory is the cache a variant held (results.csv `kv_bytes_held`, kvstudy.cache_held): after prefill for prefill
presses, at the end for decoding presses; `effective_ratio` is their measured fraction evicted. Jobs that are not
ok (oom, failed) have no score and are left out.

Latency is the timing protocol's median time to first token with its interval (timing.csv, kvstudy.timing;
`latency_source` "timing") where the study timed the variant at that length, else the eval jobs' mean TTFT with no
interval ("eval": timing off, or a variant it does not time). On the fronts a variant beats another on latency
only where their intervals do not overlap (`non_dominated`, docs/statistics.md "Timings").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kvstudy.aggregate import write_csv_atomic

PARETO_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "score", "kv_bytes", "latency_seconds",
    "front_memory", "front_latency", "front_all", "higher_is_better", "phase", "effective_ratio",
    "latency_low", "latency_high", "latency_source", "peak_memory_bytes", "front_peak_memory",
]
# front flag -> (objective column, +1 to maximise / -1 to minimise)
FRONTS = {
    "front_memory": [("score", 1), ("kv_bytes", -1)],
    "front_latency": [("score", 1), ("latency_seconds", -1)],
    "front_all": [("score", 1), ("kv_bytes", -1), ("latency_seconds", -1)],
    # peak memory where one was measured (CUDA); NaN on CPU, so nothing is on this front there
    "front_peak_memory": [("score", 1), ("peak_memory_bytes", -1)],
}
_VARIANT = ["model", "task", "length", "press"]
_MEASURES = ["score", "kv_bytes", "latency_seconds", "latency_low", "latency_high", "peak_memory_bytes"]
# objective -> its (low, high) interval columns, where it has one
_BOUNDS = {"latency_seconds": ("latency_low", "latency_high")}


def non_dominated(values: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """Mask of points no other point beats (larger is better). Q beats P when Q is not worse anywhere and better
    somewhere; with intervals (`low`, `high`, same shape; NaN: the value itself) "better" means Q's interval lies
    wholly above P's and "not worse" that Q's interval reaches P's: a variant whose advantage the intervals do
    not establish beats nothing and is beaten by a better-scoring variant it is not surely faster than. Without
    intervals this is plain Pareto dominance (>= everywhere, > somewhere).

    Hand-written because no maintained library in our pins does Pareto dominance on DataFrames;
    O(n^2) pairwise in numpy is fine for tens of press variants. Points with a NaN objective are
    left off the front and dominate nothing.
    """
    values = np.asarray(values, dtype=float)
    lo = values if low is None else np.where(np.isnan(low), values, np.asarray(low, dtype=float))
    hi = values if high is None else np.where(np.isnan(high), values, np.asarray(high, dtype=float))
    valid = ~np.isnan(values).any(axis=1)
    lo, hi = lo[valid], hi[valid]
    ge = (hi[:, None, :] >= lo[None, :, :]).all(axis=2)  # [q, p]: q not worse than p anywhere
    gt = (lo[:, None, :] > hi[None, :, :]).any(axis=2)  # [q, p]: q surely better than p somewhere
    mask = np.zeros(len(values), dtype=bool)
    mask[valid] = ~(ge & gt).any(axis=0)
    return mask


def higher_is_better(column: pd.Series | None, index) -> pd.Series:
    """The optional higher_is_better column as bools (missing, empty or unreadable -> True)."""
    if column is None:
        return pd.Series(True, index=index)
    text = column.astype(str).str.strip().str.lower()
    return ~text.isin(["false", "0", "0.0", "no"])


def _per_task(results: pd.DataFrame, timing: pd.DataFrame | None) -> pd.DataFrame:
    """One row per variant and task: ok jobs only, measures averaged over seeds; latency from `timing`."""
    ok = _with_timing(results[results["status"] == "ok"], timing)
    ok = ok.assign(higher_is_better=higher_is_better(ok.get("higher_is_better"), ok.index))
    if "kv_bytes_held" in ok.columns:  # decoding presses: the cache at the end (kvstudy.cache_held)
        ok = ok.assign(kv_bytes=ok["kv_bytes_held"])
    if "phase" not in ok.columns:  # a results.csv from before kvstudy.cache_held: every press at prefill
        ok = ok.assign(phase="prefill", effective_ratio=ok["compression_ratio"])
    return (
        ok.groupby(_VARIANT, sort=True)
        .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
             higher_is_better=("higher_is_better", "first"), phase=("phase", "first"),
             latency_source=("latency_source", "first"), effective_ratio=("effective_ratio", "mean"),
             **{m: (m, "mean") for m in _MEASURES})
        .reset_index()
    )


def _with_timing(ok: pd.DataFrame, timing: pd.DataFrame | None) -> pd.DataFrame:
    """`latency_seconds/_low/_high` and `latency_source`: the timing protocol's median TTFT and interval for the
    (model, length, press) it timed ok, else the job's own TTFT with no interval; `peak_memory_bytes` the same way
    (the protocol's median peak where it measured one, else the job's)."""
    ok = ok.assign(peak_memory_bytes=pd.to_numeric(ok.get("peak_memory_bytes", np.nan), errors="coerce"))
    ok = ok.assign(latency_seconds=pd.to_numeric(ok["ttft_seconds"], errors="coerce"), latency_low=np.nan,
                   latency_high=np.nan, latency_source="eval")
    timed, hit = _timed(ok, timing)
    if not timed.any():
        return ok
    ok = ok.copy()
    for col, src in (("latency_seconds", "ttft_seconds"), ("latency_low", "ttft_seconds_low"),
                     ("latency_high", "ttft_seconds_high")):
        ok.loc[timed, col] = hit[src].to_numpy(float)
    ok.loc[timed, "latency_source"] = "timing"
    peak = pd.to_numeric(hit.get("peak_memory_bytes", pd.Series(np.nan, index=hit.index)), errors="coerce")
    measured = timed.copy()
    measured[timed] = peak.notna().to_numpy()  # the protocol's peak (no fidelity reference, no shared prefill)
    ok.loc[measured, "peak_memory_bytes"] = peak.dropna().to_numpy(float)
    return ok


def _timed(ok: pd.DataFrame, timing: pd.DataFrame | None) -> tuple[np.ndarray, pd.DataFrame]:
    """(mask of the rows of `ok` whose (model, length, press) the timing protocol ran ok; their timing.csv rows)."""
    if timing is None or timing.empty:
        return np.zeros(len(ok), dtype=bool), pd.DataFrame()
    t = timing[timing["status"].astype(str) == "ok"]
    t = t.set_index([t["model"].astype(str), t["length"].astype(int), t["press"].astype(str)])
    key = pd.MultiIndex.from_arrays([ok["model"].astype(str), ok["length"].astype(int), ok["press"].astype(str)])
    timed = np.asarray(key.isin(t.index))
    return timed, t.reindex(key[timed])


def _over_tasks(per_task: pd.DataFrame) -> pd.DataFrame:
    """task = "mean": per (model, length), the mean over tasks of variants that have every task."""
    keys = ["model", "length"]
    per_task = per_task[per_task["higher_is_better"]]
    n_tasks = per_task.groupby(keys)["task"].transform("nunique")
    n_have = per_task.groupby([*keys, "press"])["task"].transform("nunique")
    complete = per_task[n_have == n_tasks]
    mean = (
        complete.groupby([*keys, "press"], sort=True)
        .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
             phase=("phase", "first"), effective_ratio=("effective_ratio", "mean"),
             latency_source=("latency_source", "first"), **{m: (m, "mean") for m in _MEASURES})
        .reset_index()
    )
    mean["task"] = "mean"
    mean["higher_is_better"] = True
    return mean


def _flag_fronts(group: pd.DataFrame) -> pd.DataFrame:
    """Add the three front flags to one (model, task, length) group."""
    group = group.copy()
    score_sign = 1 if bool(group["higher_is_better"].iloc[0]) else -1
    for flag, objectives in FRONTS.items():
        signed, low, high = [], [], []
        for col, sign in objectives:
            s = sign * (score_sign if col == "score" else 1)
            value = group[col].to_numpy(float)
            lo, hi = (group[c].to_numpy(float) for c in _BOUNDS[col]) if col in _BOUNDS else (value, value)
            signed.append(value * s)
            low.append((lo if s > 0 else hi) * s)  # minimised: the interval flips with the sign
            high.append((hi if s > 0 else lo) * s)
        group[flag] = non_dominated(np.column_stack(signed), np.column_stack(low), np.column_stack(high))
    return group


def pareto(results: pd.DataFrame, timing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Front flags per (model, task, length) and for the task mean, from a results.csv frame and, where the study
    timed its variants, timing.csv (kvstudy.timing_table)."""
    per_task = _per_task(results, timing)
    mean = _over_tasks(per_task)
    table = pd.concat([per_task, mean] if len(mean) else [per_task], ignore_index=True)
    if table.empty:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    parts = [_flag_fronts(g) for _, g in table.groupby(["model", "task", "length"], sort=False)]
    return pd.concat(parts, ignore_index=True)[PARETO_COLUMNS]


def write_pareto(results_csv: Path, out_csv: Path, timing_csv: Path | None = None) -> None:
    """results.csv (+ timing.csv) -> pareto.csv (identifiers read as strings so "007"-like names survive)."""
    ids = {c: str for c in ("model", "task", "press", "method", "status")}
    results = pd.read_csv(results_csv, dtype=ids)
    write_csv_atomic(pareto(results, read_timing(timing_csv)), out_csv)


def read_timing(path: Path | None) -> pd.DataFrame | None:
    """timing.csv, or None where there is none or it has no rows (timing off)."""
    if path is None or not Path(path).exists():
        return None
    try:
        t = pd.read_csv(path, dtype={c: str for c in ("model", "press", "method", "status")})
    except pd.errors.EmptyDataError:
        return None
    return t if len(t) else None
