"""A failed eval job as data: the raw result `kvstudy eval` writes when the job raised.

A job that raises (anything but a CUDA out-of-memory, which the engine records as `status: oom`) still writes a raw
result, `status: "failed"`, so that Snakemake keeps it and everything downstream builds: the
aggregate lists it (status, error), every number leaves it out and every figure draws it as "failed". The full
traceback goes to the job's log. `kvstudy status STUDY --retry-failed` removes these records so that the next
snakemake run computes exactly them again. A process killed from outside (SLURM limits, kill -9) writes nothing
and is retried by Snakemake as before.
"""

from __future__ import annotations

import torch

from kvstudy.engine.result import SCHEMA_VERSION, job_block
from kvstudy.job import Job, as_jobs, thaw
from kvstudy.measure import now_iso, pick_device, provenance

# efficiency keys a result always has (src/kvstudy/schemas/result.schema.json); a failed job measured none of them
EFFICIENCY_KEYS = ("kv_tokens_kept", "kv_tokens_full", "kv_fraction_kept", "kv_bytes", "kv_bytes_full",
                   "peak_memory_bytes", "peak_memory_kind", "prefill_seconds", "ttft_seconds",
                   "decode_tokens_per_second", "total_seconds")


def error_line(exc: BaseException) -> str:
    """"RuntimeError: first line of the message" (the type alone when there is no message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _quality(job: Job) -> dict:
    """Metric and direction of the job's task, read without running it; the task may be what failed."""
    from kvstudy.tasks import TASKS

    cls = TASKS.get(job.task_kind)
    metric, higher = getattr(cls, "metric", None), getattr(cls, "higher_is_better", True)
    try:
        metric = cls(**thaw(job.task_params)).metric  # a scorer parameter may pick the metric
    except Exception:  # noqa: BLE001 -- the class's own metric is the best we know
        pass
    out = {"metric": str(metric or "unknown"), "score": None, "n": 0}
    return out if higher else out | {"higher_is_better": False}


def _provenance(device: str) -> dict:
    try:
        dev = pick_device(device)
    except (RuntimeError, ValueError):
        dev = torch.device("cpu")
    return provenance(dev)


def failed_result(job: Job | dict, exc: BaseException | str, device: str, started: str) -> dict:
    """The raw result of a job that raised `exc` (or its `error_line`): its identity, status "failed", the error's
    first line, no score, no samples, no measures, and where it ran. A dict job (a test's) is made a Job first."""
    job = as_jobs([job])[0]
    d = job.as_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "job": job_block(job) | {k: d[k] for k in ("split", "tuning") if k in d},
        "status": "failed",
        "error": exc if isinstance(exc, str) else error_line(exc),
        "quality": _quality(job),
        "samples": [],
        "efficiency": dict.fromkeys(EFFICIENCY_KEYS),
        "fidelity": None,
        "provenance": {**_provenance(device), "started": started, "finished": now_iso()},
    }
