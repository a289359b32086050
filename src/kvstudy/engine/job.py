"""A group job: press variants of one (model, task, length, seed), one model load, one raw result per variant.

The variants' jobs (from `kvstudy.grid`) must agree on everything but the press. The model and tokenizer are loaded
once, the samples built once, and `kvstudy.engine.group` runs the variants (one prefill per sample and prefill
class). What is done per sample and how a result reads is the task kind's *runner* (`kvstudy.evaluate.Generation`,
`kvstudy.perplexity.Perplexity`): `samples`, `one(run, prefill, sample)`, `result(variant)` and, for tasks scored
after generation by a judge model, `judge(variant)` once the evaluated model is freed.
"""

from __future__ import annotations

import time

import torch

from kvstudy.engine.group import GroupRun, free_memory, resolve
from kvstudy.engine.result import SCHEMA_VERSION, efficiency, job_block
from kvstudy.failed import failed_result
from kvstudy.job import Job, as_jobs, thaw
from kvstudy.measure import Clock, PeakMemory, now_iso, pick_device, provenance  # pick_device: re-exported

PRESS_KEYS = ("press", "method", "params", "compression_ratio", "tuning", "split", "tuning_of", "attn_error")


def _cell(job: Job) -> dict:
    return {k: v for k, v in vars(job).items() if k not in PRESS_KEYS}


def check_cell(jobs: list[Job]) -> None:
    """Raise ValueError unless the jobs differ in their press only."""
    if not jobs:
        raise ValueError("a group job needs at least one job")
    first = _cell(jobs[0])
    for job in jobs[1:]:
        other = _cell(job)
        if other != first:
            diff = sorted(k for k in first if first[k] != other[k])
            raise ValueError(f"a group job runs variants of one cell; {job.press} differs in {', '.join(diff)}")
    presses = [j.press for j in jobs]
    if len(set(presses)) != len(presses):
        raise ValueError(f"a group job runs each variant once: {presses}")


def warm_up(model, samples, dev):
    """The first forward pays one-time costs (kernel selection, allocator) that are not the press's; peak memory is
    measured from after it."""
    mem = PeakMemory(dev)
    with torch.no_grad():
        model(input_ids=torch.tensor([samples[0].context_ids[:64]], device=dev))
    mem.reset()
    return mem


def run_group(jobs: list[Job | dict], runner_cls, load, threads: int = 1, device: str = "auto",
              failures: dict | None = None) -> list[dict]:
    """Run every job of the group (one cell) and return their raw results, in order. `load(path, dtype,
    attention, device, overrides)` loads the model. A variant that fails or runs out of memory has a result saying
    so (`failures` gets a failed variant's traceback by index); an error before any variant ran (the model, the
    samples) raises, for the caller to record."""
    jobs = as_jobs(jobs)  # a job given by hand (a dict) gets the schema's defaults
    check_cell(jobs)
    started, t_start = now_iso(), time.perf_counter()
    torch.set_num_threads(threads)
    dev = pick_device(device)
    variants = [resolve(job) for job in jobs]
    parts = _run(variants, runner_cls, load, dev, t_start) if any(v.status == "ok" for v in variants) else {}
    out = []
    for i, v in enumerate(variants):
        if v.status == "failed":
            out.append(failed_result(v.job, v.error, device, started))
            if failures is not None:
                failures[i] = v.trace
            continue
        part = parts[i]
        out.append({"schema_version": SCHEMA_VERSION, "job": job_block(v.job) | part.pop("job", {}),
                    "status": v.status, "error": v.error, **part,
                    "provenance": {**provenance(dev), "started": started, "finished": now_iso()}})
    return out


def _run(variants, runner_cls, load, dev, t_start) -> dict[int, dict]:
    """Load the model once, run the live variants, and return each one's result parts (quality, samples,
    efficiency, fidelity, job extras) by index; a judged task's judge runs once the evaluated model is freed."""
    live = [v for v in variants if v.status == "ok"]
    job = live[0].job
    model, tokenizer = load(job.model_path, job.dtype, live[0].attention, str(dev), thaw(job.config_overrides))
    runner = runner_cls(job, model, tokenizer, dev)
    clock, mem = Clock(dev), warm_up(model, runner.samples, dev)
    GroupRun(model, runner.samples, runner.one, clock, mem, dev).run(live)
    total = time.perf_counter() - t_start  # the job's, the same for each of its variants
    parts = {i: runner.result(v) | {"efficiency": efficiency(v, model, runner.full_tokens(v), mem.kind, total,
                                                              len(variants))}
             for i, v in enumerate(variants) if v.status != "failed"}
    if getattr(runner, "judged", False):  # the evaluated model is freed before the judge loads
        runner.model = None
        del model
        for v in variants:
            v.run = None
        free_memory(dev)
        for i, v in enumerate(variants):
            if v.status == "ok" and v.rows:
                parts[i]["quality"] |= runner.judge(v)
    return parts
