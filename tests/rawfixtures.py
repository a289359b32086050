"""Schema-valid raw results for a job of kvstudy.grid (tests of the readers: rawcheck, status, rawguard)."""

from __future__ import annotations

import json
from pathlib import Path

PROVENANCE = {"kvstudy_version": "0.1.0", "git_commit": "abc", "python": "3.11.7", "torch": "2.13.0",
              "transformers": "5.2.0", "kvpress": "0.5.5", "device": "cpu", "device_name": "x86_64", "cuda": None,
              "host": "node1", "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00"}
EFFICIENCY = {"kv_tokens_kept": 128.0, "kv_tokens_full": 256, "kv_fraction_kept": 0.5, "kv_bytes": 65536,
              "kv_bytes_full": 131072, "peak_memory_bytes": 10**8, "peak_memory_kind": "rss",
              "prefill_seconds": 0.01, "ttft_seconds": 0.012, "decode_tokens_per_second": 900.0,
              "total_seconds": 1.3}


def raw_for(job, status: str = "ok", scores=(1.0, 0.0), metric: str = "string_match_all") -> dict:
    """A raw result of `job` (a kvstudy.job.Job, or its dict) as kvstudy.evaluate (ok, oom) or kvstudy.failed
    (failed) writes it."""
    from kvstudy.job import Job

    job = job.as_dict() if isinstance(job, Job) else job  # a result's job block is plain JSON
    if status == "failed":
        from kvstudy.failed import failed_result

        return failed_result(job, RuntimeError("boom"), "cpu", PROVENANCE["started"])
    ok = status == "ok"
    samples = [{"id": str(i), "score": s, "prediction": "v001", "references": ["v001"], "input_tokens": 258,
                "context_tokens": 256, "depth": 0.5, "kv_tokens": 128.0, "kv_bytes": 65536, "prefill_seconds": 0.01,
                "ttft_seconds": 0.012, "decode_tokens": 2, "decode_seconds": 0.001} for i, s in enumerate(scores)]
    return {
        "schema_version": 1,
        "job": {k: job[k] for k in ("model", "model_path", "task", "task_params", "length", "press", "method",
                                    "params", "compression_ratio", "seed")}
        | {k: job[k] for k in ("split", "tuning") if k in job},
        "status": status,
        "error": None if ok else "CUDA out of memory",
        "quality": {"metric": metric, "score": sum(scores) / len(scores) if ok else None,
                    "n": len(scores) if ok else 0},
        "samples": samples if ok else [],
        "efficiency": dict(EFFICIENCY) if ok else dict.fromkeys(EFFICIENCY),
        "fidelity": None,
        "provenance": dict(PROVENANCE),
    }


def write(path: Path, raw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return path
