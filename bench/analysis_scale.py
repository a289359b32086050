"""Time aggregation + analysis on 10,000 synthetic raw results (goal: <= 10 s in all).

The first step, `check`, is what the Snakefile does before the DAG when there is no results.csv yet: read and check
every raw result (kvstudy.rawguard.check_results); `aggregate` checks them again as it reads them.

Writes N raw result JSONs (schema of docs/data-contracts.md) into a temp dir -- 5 models x 4 tasks x 5 lengths x
20 press variants x 5 seeds by default, 20 samples each, a few percent OOM, one task with continuous scores (so
the Wilcoxon path runs too) -- then times each step as the pipeline runs it: `aggregate` (raw -> tables),
`pareto`, `significance` (paired tests + across-seed Welch) and `summary` (CSV + LaTeX tables), reading the CSVs
the step before wrote. Prints one table row per step and the machine's load average.

    python bench/analysis_scale.py [--samples 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kvstudy.aggregate import aggregate
from kvstudy.pareto import write_pareto
from kvstudy.rawguard import check_results
from kvstudy.significance import write_significance
from kvstudy.summary import write_summary

MODELS = [f"model{i}" for i in range(5)]
TASKS = ["niah", "kv_retrieval", "qa", "rouge"]  # rouge: continuous scores
LENGTHS = [1024, 2048, 4096, 8192, 16384]
METHODS = ["knorm", "snapkv", "streaming_llm", "tova", "pyramidkv"]
RATIOS = [0.25, 0.5, 0.75, 0.9]
SEEDS = [0, 1, 2, 3, 4]


def variants():
    out = [("no_press", "no_press", 0.0)]
    out += [(f"{m}-cr{r:.2f}", m, r) for m in METHODS for r in RATIOS]
    return out[:20]


def raw(model, task, length, press, method, ratio, seed, n, rng):
    oom = length == 16384 and method == "no_press" and model == "model0"
    p = 0.9 - 0.6 * ratio**2
    if task == "rouge":
        scores = np.clip(rng.normal(p, 0.15, n), 0, 1).round(4)
    else:
        scores = (rng.uniform(size=n) < p).astype(float)
    kept = length * (1 - ratio)
    samples = [{"id": str(i), "score": float(s), "prediction": "v001", "references": ["v001"],
                "input_tokens": length + 12, "context_tokens": length, "depth": (i + 0.5) / n,
                "kv_tokens": kept, "kv_bytes": int(kept * 256), "prefill_seconds": 1e-5 * length,
                "ttft_seconds": 1.2e-5 * length, "decode_tokens": 2, "decode_seconds": 0.002}
               for i, s in enumerate(scores)]
    return {
        "schema_version": 1,
        "job": {"model": model, "model_path": f"org/{model}", "task": task, "task_params": {}, "length": length,
                "press": press, "method": method, "params": {}, "compression_ratio": ratio, "seed": seed},
        "status": "oom" if oom else "ok",
        "error": "CUDA out of memory" if oom else None,
        "quality": {"metric": "rouge_l_f1" if task == "rouge" else "string_match_all",
                    "score": None if oom else float(scores.mean()), "n": 0 if oom else n},
        "samples": [] if oom else samples,
        "efficiency": {"kv_tokens_kept": kept, "kv_tokens_full": length, "kv_fraction_kept": 1 - ratio,
                       "kv_bytes": int(kept * 256), "kv_bytes_full": length * 256, "peak_memory_bytes": 10**9,
                       "peak_memory_kind": "cuda", "prefill_seconds": 1e-5 * length, "ttft_seconds": 1.2e-5 * length,
                       "decode_tokens_per_second": 900.0, "total_seconds": 1.3},
        "fidelity": None,
        "provenance": {"kvstudy_version": "0.1.0", "git_commit": "abc", "python": "3.11.7", "torch": "2.13.0",
                       "transformers": "5.2.0", "kvpress": "0.5.5", "device": "cuda", "device_name": "H100",
                       "cuda": "12.8", "host": "node1", "started": "2026-01-01T00:00:00+00:00",
                       "finished": "2026-01-01T00:00:01+00:00"},
    }


def write_raws(root: Path, n_samples: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for model in MODELS:
        for task in TASKS:
            for length in LENGTHS:
                for press, method, ratio in variants():
                    for seed in SEEDS:
                        path = root / "raw" / model / task / str(length) / press / f"seed{seed}.json"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps(raw(model, task, length, press, method, ratio, seed,
                                                       n_samples, rng)))
                        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20, help="samples per raw result")
    ap.add_argument("--keep", help="write into this directory and keep it")
    a = ap.parse_args()
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="kvstudy-bench-"))
    try:
        paths = write_raws(root, a.samples)
        tables, analysis = root / "tables", root / "analysis"
        # each result's job, as the config gives it, so that the checks compare every field (kvstudy.rawcheck)
        jobs = {str(p): json.loads(p.read_text())["job"] for p in paths}
        steps = [
            # what the Snakefile does when no table exists yet (a fresh clone with copied results): read every one
            ("check", lambda: check_results(jobs, act=False, reference=str(tables / "results.csv"))),
            ("aggregate", lambda: aggregate(paths, tables, jobs)),
            ("pareto", lambda: write_pareto(tables / "results.csv", analysis / "pareto.csv")),
            ("significance", lambda: write_significance(tables / "samples.csv", analysis / "significance.csv",
                                                        seeds_csv=analysis / "significance_seeds.csv")),
            ("summary", lambda: write_summary(tables / "results.csv", analysis / "significance.csv",
                                              root / "summary")),
        ]
        rows = []
        for name, fn in steps:
            t0 = time.perf_counter()
            fn()
            rows.append((name, time.perf_counter() - t0))
        n_samples = sum(1 for _ in open(tables / "samples.csv")) - 1
        n_tests = sum(1 for _ in open(analysis / "significance.csv")) - 1
        print(f"{len(paths)} raw results, {n_samples} samples, {n_tests} paired comparisons "
              f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs)")
        print(f"{'step':<14}{'seconds':>10}")
        for name, sec in rows:
            print(f"{name:<14}{sec:>10.2f}")
        total = sum(sec for _, sec in rows)
        print(f"{'total':<14}{total:>10.2f}   goal <= 10 s: {'met' if total <= 10 else 'NOT met'}")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
