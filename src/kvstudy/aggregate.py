"""Raw result JSONs -> the CSV tables of docs/data-contracts.md (results, samples, paper tables).

Jobs that failed (`status: "failed"`, kvstudy.failed) or ran out of memory are rows of results.csv with their
status and error and no measures; they have no samples, so no number anywhere counts them. Each failed job is
also one warning line on stderr (its raw result and error), so a run with failures stays loud.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kvstudy.atomic import file_mode, write_csv_atomic, write_text_atomic  # noqa: F401  (re-exported)
from kvstudy.cache_held import HELD_COLUMNS, add_held
from kvstudy.metric_columns import JUDGED, sub_score_columns
from kvstudy.rawcheck import InvalidResults, RawResultError, read  # InvalidResults: re-exported

RESULT_COLUMNS = [
    "model", "model_path", "task", "length", "press", "method", "compression_ratio", "seed",
    "status", "metric", "score", "n", "kv_tokens_kept", "kv_tokens_full", "kv_fraction_kept", "kv_bytes",
    "kv_bytes_full", "peak_memory_bytes", "peak_memory_kind", "prefill_seconds", "ttft_seconds",
    "decode_tokens_per_second", "total_seconds", "kv_fraction_attended", "kv_tokens_final", "kv_bytes_final",
    "params", "device", "host", "git_commit", "kvstudy_version", "higher_is_better", "error",
    *HELD_COLUMNS, "citation_recall", "citation_precision",
]  # then one column per other sub-score (kvstudy.metric_columns: a task's extra metrics)
SAMPLE_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "seed", "sample_id",
    "score", "prediction", "references", "input_tokens", "context_tokens", "depth", "kv_tokens", "kv_bytes",
    "prefill_seconds", "ttft_seconds", "higher_is_better", "nll", "nll_sum", "scored_tokens", "cluster",
    "citation_recall", "citation_precision",
]  # then the same sub-score columns as results.csv
PAPER_COLUMNS = [
    "model", "technique", "cache_size", "task", "context_length", "performance", "memory_gb",
    "throughput_tokens_per_sec",
    # issue 15: measured KV bytes, prefill throughput, the decode throughput's interval and where both come from
    "kv_memory_gb", "prefill_tokens_per_sec", "throughput_low", "throughput_high", "efficiency_source",
]
# Paper table -> (sort column, ascending): best first within (model, task, context_length).
PAPER_TABLES = {
    "performance.csv": ("performance", False),
    "memory_usage.csv": ("kv_memory_gb", True),
    "throughput.csv": ("throughput_tokens_per_sec", False),
}

_JOB_KEYS = ["model", "task", "length", "press", "method", "compression_ratio", "seed"]
_EFFICIENCY_KEYS = RESULT_COLUMNS[RESULT_COLUMNS.index("kv_tokens_kept"):RESULT_COLUMNS.index("params")]
_INT_COLUMNS = ["length", "seed", "n", "kv_tokens_full", "kv_bytes", "kv_bytes_full", "peak_memory_bytes",
                "input_tokens", "context_tokens", "cache_size", "scored_tokens",
                "kv_bytes_held", "kv_bytes_reference"]


def read_results(raw_paths, jobs: dict[str, dict] | None = None) -> list[tuple[dict, Path]]:
    """(raw result, path) of every path, each checked by kvstudy.rawcheck against its job in `jobs` (path -> the
    config's job; None: schema and contract only). Raises InvalidResults naming every bad file before any table is
    written: nothing wrong reaches a table."""
    loaded, bad = [], []
    for path in map(Path, raw_paths):
        try:
            loaded.append((read(path, jobs.get(str(path)) if jobs else None), path))
        except RawResultError as e:
            bad.append(e)
    if bad:
        raise InvalidResults(bad)
    return loaded


def _job_order(raw: dict[str, Any]) -> tuple:
    """Deterministic table order whatever order the paths come in."""
    job = raw["job"]
    return job["model"], job["task"], job["length"], job["press"], job["seed"]


def _result_row(raw: dict[str, Any], sub_scores: dict[str, str]) -> dict[str, Any]:
    """One results.csv row; an oom job keeps its identity but no score or measures."""
    job, prov = raw["job"], raw.get("provenance") or {}
    quality, eff = raw.get("quality") or {}, raw.get("efficiency") or {}
    row = {k: job.get(k) for k in _JOB_KEYS}
    row["model_path"] = job.get("model_path")
    row["status"] = raw.get("status")
    row["metric"] = quality.get("metric")
    ok = row["status"] == "ok"
    row["score"] = quality.get("score") if ok else None
    row["n"] = quality.get("n") if ok else None
    row.update({k: (eff.get(k) if ok else None) for k in _EFFICIENCY_KEYS})
    row["params"] = json.dumps(job.get("params") or {}, separators=(",", ":"), sort_keys=True)
    row.update({k: prov.get(k) for k in ("device", "host", "git_commit", "kvstudy_version")})
    row["higher_is_better"] = _higher_is_better(raw)
    row["error"] = raw.get("error") if not ok else None
    subs = quality.get("sub_scores") or {}
    row.update({col: (subs.get(key) if ok else None) for col, key in sub_scores.items()})
    return row


def _higher_is_better(raw: dict[str, Any]) -> bool:
    """quality.higher_is_better (optional, e.g. false for perplexity); true when absent."""
    value = (raw.get("quality") or {}).get("higher_is_better")
    return True if value is None else bool(value)


def _sample_rows(raw: dict[str, Any], sub_scores: dict[str, str]) -> list[tuple]:
    """samples.csv rows as tuples (fast to build for hundreds of thousands of samples)."""
    if raw.get("status") != "ok":
        return []
    key = tuple(raw["job"].get(k) for k in _JOB_KEYS)
    hib = _higher_is_better(raw)
    return [
        (*key, str(s.get("id")), s.get("score"), s.get("prediction"), "|".join(s.get("references") or []),
         s.get("input_tokens"), s.get("context_tokens"), s.get("depth"), s.get("kv_tokens"), s.get("kv_bytes"),
         s.get("prefill_seconds"), s.get("ttft_seconds"), hib, s.get("nll"), s.get("nll_sum"), s.get("scored_tokens"),
         _cluster(s), *(s.get(key) for key in sub_scores.values()))
        for s in raw.get("samples") or []
    ]


def _cluster(sample: dict[str, Any]) -> str:
    """The sample's cluster (`meta.cluster`: samples sharing a context share it), else its own id: the unit the
    significance tests count (kvstudy.significance)."""
    cluster = (sample.get("meta") or {}).get("cluster")
    return str(sample.get("id") if cluster is None else cluster)


def _as_int(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable ints so counts with gaps print as 512, not 512.0; non-integral columns stay float."""
    for col in df.columns.intersection(_INT_COLUMNS):
        values = pd.to_numeric(df[col], errors="coerce")
        present = values.dropna()
        if (present == present.round()).all():
            df[col] = values.round().astype("Int64")
    return df


def paper_table(results: pd.DataFrame, timing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Study-1 table: one row per (model, press, task, length), measures averaged over ok seeds. `kv_memory_gb` is
    the cache held (kv_bytes_held, read from the cache tensors); `memory_gb` the peak device memory above the
    weights (CUDA; empty on CPU, kvstudy.measure.PeakMemory). Throughput (decode, and prefill tokens/s) is the
    timing protocol's median and interval (`efficiency_source` "timing") where `timing` has the variant at that
    length, else the eval jobs' own ("eval": prefill tokens/s = length / prefill seconds, no interval)."""
    keys = ["model", "press", "task", "length"]
    measures = ["score", "kv_tokens_held", "kv_bytes_held", "peak_memory_bytes", "decode_tokens_per_second",
                "prefill_seconds"]
    ok = results[results["status"] == "ok"]
    # astype(float): with only oom jobs the measure columns hold nothing but None (object dtype).
    means = ok[measures].astype(float).groupby([ok[k] for k in keys], sort=False).mean()
    jobs = results[keys].drop_duplicates().join(means, on=keys)
    table = pd.DataFrame({
        "model": jobs["model"],
        "technique": jobs["press"],
        "cache_size": jobs["kv_tokens_held"].round(),  # decoding presses: the cache they held at the end
        "task": jobs["task"],
        "context_length": jobs["length"],
        "performance": jobs["score"] * 100,
        "memory_gb": jobs["peak_memory_bytes"] / 1e9,
        "throughput_tokens_per_sec": jobs["decode_tokens_per_second"],
        "kv_memory_gb": jobs["kv_bytes_held"] / 1e9,
        "prefill_tokens_per_sec": jobs["length"].astype(float) / jobs["prefill_seconds"],
        "efficiency_source": np.where(jobs["score"].notna(), "eval", None),
    }, columns=PAPER_COLUMNS)
    return _as_int(_timed(table, timing).reset_index(drop=True))


def _timed(table: pd.DataFrame, timing: pd.DataFrame | None) -> pd.DataFrame:
    """Throughput from the timing protocol's ok rows, where it has the (model, length, press)."""
    if timing is None or timing.empty:
        return table
    t = timing[timing["status"].astype(str) == "ok"]
    t = t.set_index([t["model"].astype(str), t["length"].astype(int), t["press"].astype(str)])
    key = pd.MultiIndex.from_arrays([table["model"].astype(str), table["context_length"].astype(int),
                                     table["technique"].astype(str)])
    timed = np.asarray(key.isin(t.index)) & table["performance"].notna().to_numpy()
    if not timed.any():
        return table
    hit = t.reindex(key[timed])
    table = table.copy()
    for col, src in (("throughput_tokens_per_sec", "decode_tokens_per_second"),
                     ("throughput_low", "decode_tokens_per_second_low"),
                     ("throughput_high", "decode_tokens_per_second_high"),
                     ("prefill_tokens_per_sec", "prefill_tokens_per_second")):
        table.loc[timed, col] = hit[src].to_numpy(float)
    table.loc[timed, "efficiency_source"] = "timing"
    return table


def _sorted_by(table: pd.DataFrame, column: str, ascending: bool) -> pd.DataFrame:
    """Sort within (model, task, context_length); oom rows (no measure) last, technique breaks ties."""
    return table.sort_values(
        ["model", "task", "context_length", column, "technique"],
        ascending=[True, True, True, ascending, True], na_position="last", kind="mergesort",
    ).reset_index(drop=True)


def aggregate(raw_paths: list[Path], out_dir: Path, jobs: dict | None = None,
              timing_paths: list[Path] = ()) -> None:
    """Read and check every raw result once (`read_results`; `jobs`: path -> the config's job) and every timing
    result (kvstudy.timing_table), and write the six tables of the contract into out_dir (timing.csv: header only
    when the study times nothing)."""
    from kvstudy.timing_table import timing_table  # lazy: it imports kvstudy.timing, and with it torch

    # Sorting the jobs first orders both tables without sorting the (large) samples frame.
    loaded = sorted(read_results(raw_paths, jobs), key=lambda rp: _job_order(rp[0]))
    timing = timing_table(timing_paths)  # raises InvalidTiming (an InvalidResults) naming a bad file
    raws = [raw for raw, _ in loaded]
    for raw, path in loaded:
        if raw.get("status") == "failed":
            print(f"aggregate: warning: failed job {path}: {raw.get('error')}", file=sys.stderr)
    subs = sub_score_columns(raws)
    extra = [c for c in subs if c not in JUDGED]
    result_rows = [_result_row(raw, subs) for raw in raws]
    sample_rows = [row for raw in raws for row in _sample_rows(raw, subs)]
    results = pd.DataFrame(result_rows, columns=[c for c in RESULT_COLUMNS + extra if c not in HELD_COLUMNS])
    results, warnings = add_held(results)
    for line in warnings:
        print(line, file=sys.stderr)
    results = _as_int(results[RESULT_COLUMNS + extra])
    samples = _as_int(pd.DataFrame(sample_rows, columns=SAMPLE_COLUMNS + extra))
    out_dir = Path(out_dir)
    write_csv_atomic(results, out_dir / "results.csv")
    write_csv_atomic(samples, out_dir / "samples.csv")
    write_csv_atomic(timing, out_dir / "timing.csv")
    table = paper_table(results, timing)
    for name, (column, ascending) in PAPER_TABLES.items():
        write_csv_atomic(_sorted_by(table, column, ascending), out_dir / name)
