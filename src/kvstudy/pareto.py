"""Pareto fronts of quality against KV memory and latency, per task and averaged over tasks.

The score is maximised, or minimised where results.csv says `higher_is_better` is false (perplexity). The task
mean ("mean") averages only higher-is-better tasks: a mean of accuracies and perplexities means nothing.

Memory is the cache a variant held (results.csv `kv_bytes_held`, kvstudy.cache_held): after prefill for prefill
presses, at the end for decoding presses; `effective_ratio` is their measured fraction evicted. Jobs that are not
ok (oom, failed) have no score and are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kvstudy.aggregate import write_csv_atomic

PARETO_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "score", "kv_bytes", "latency_seconds",
    "front_memory", "front_latency", "front_all", "higher_is_better", "phase", "effective_ratio",
]
# front flag -> (objective column, +1 to maximise / -1 to minimise)
FRONTS = {
    "front_memory": [("score", 1), ("kv_bytes", -1)],
    "front_latency": [("score", 1), ("latency_seconds", -1)],
    "front_all": [("score", 1), ("kv_bytes", -1), ("latency_seconds", -1)],
}
_VARIANT = ["model", "task", "length", "press"]
_MEASURES = ["score", "kv_bytes", "latency_seconds"]


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats (>= everywhere, > somewhere; larger is better).

    Hand-written because no maintained library in our pins does Pareto dominance on DataFrames;
    O(n^2) pairwise in numpy is fine for tens of press variants. Points with a NaN objective are
    left off the front and dominate nothing.
    """
    values = np.asarray(values, dtype=float)
    valid = ~np.isnan(values).any(axis=1)
    x = values[valid]
    ge = (x[:, None, :] >= x[None, :, :]).all(axis=2)
    gt = (x[:, None, :] > x[None, :, :]).any(axis=2)
    mask = np.zeros(len(values), dtype=bool)
    mask[valid] = ~(ge & gt).any(axis=0)
    return mask


def higher_is_better(column: pd.Series | None, index) -> pd.Series:
    """The optional higher_is_better column as bools (missing, empty or unreadable -> True)."""
    if column is None:
        return pd.Series(True, index=index)
    text = column.astype(str).str.strip().str.lower()
    return ~text.isin(["false", "0", "0.0", "no"])


def _per_task(results: pd.DataFrame) -> pd.DataFrame:
    """One row per variant and task: ok jobs only, measures averaged over seeds."""
    ok = results[results["status"] == "ok"].rename(columns={"ttft_seconds": "latency_seconds"})
    ok = ok.assign(higher_is_better=higher_is_better(ok.get("higher_is_better"), ok.index))
    if "kv_bytes_held" in ok.columns:  # decoding presses: the cache at the end (kvstudy.cache_held)
        ok = ok.assign(kv_bytes=ok["kv_bytes_held"])
    if "phase" not in ok.columns:  # a results.csv from before kvstudy.cache_held: every press at prefill
        ok = ok.assign(phase="prefill", effective_ratio=ok["compression_ratio"])
    return (
        ok.groupby(_VARIANT, sort=True)
        .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
             higher_is_better=("higher_is_better", "first"), phase=("phase", "first"),
             effective_ratio=("effective_ratio", "mean"), **{m: (m, "mean") for m in _MEASURES})
        .reset_index()
    )


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
             **{m: (m, "mean") for m in _MEASURES})
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
        signed = np.column_stack([group[col].to_numpy(float) * sign * (score_sign if col == "score" else 1)
                                  for col, sign in objectives])
        group[flag] = non_dominated(signed)
    return group


def pareto(results: pd.DataFrame) -> pd.DataFrame:
    """Front flags per (model, task, length) and for the task mean, from a results.csv frame."""
    per_task = _per_task(results)
    mean = _over_tasks(per_task)
    table = pd.concat([per_task, mean] if len(mean) else [per_task], ignore_index=True)
    if table.empty:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    parts = [_flag_fronts(g) for _, g in table.groupby(["model", "task", "length"], sort=False)]
    return pd.concat(parts, ignore_index=True)[PARETO_COLUMNS]


def write_pareto(results_csv: Path, out_csv: Path) -> None:
    """results.csv -> pareto.csv (identifiers read as strings so "007"-like names survive)."""
    results = pd.read_csv(results_csv, dtype={c: str for c in ("model", "task", "press", "method", "status")})
    write_csv_atomic(pareto(results), out_csv)
