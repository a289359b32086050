"""Cold runtime (issue 21.1, log 001's "warm vs cold"): each press variant's first call after the model is loaded.

In the timing protocol's warm-up round only the first variant of the round is cold: the others run in the same
process after it, with kernels chosen, the allocator grown and lazy imports done. So with `timing.cold: true` every
(variant, repeat) runs in a fresh process of its own (multiprocessing "spawn": nothing inherited from the parent):
it imports kvstudy, loads the model and builds the variant's press untimed (the load's seconds are recorded apart,
`load_seconds`), then times exactly one `kvstudy.timing.timed_run` with the protocol's clock, ids and decode length.
What a first call pays on top of a warm one (CUDA kernel selection and lazy initialisation, allocator growth,
first-touch of the weights' pages) is in it; import and model load are not.

`timing.cold_repeats` fresh processes per variant (default 1: each one reloads the model), run before the warm
rounds so that the parent holds no model meanwhile, variants in a seeded shuffled order per repeat. `run_job` is
the timing job's entry point (`kvstudy timing`): cold runs, then kvstudy.timing.run_job.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import torch

from kvstudy.measure import PeakMemory, pick_device
from kvstudy.presses.variant import attention_for, build_run
from kvstudy import timing
from kvstudy.timing import TimingClock, context_ids, derive, error_line, summarise, timed_run

MEASURES = ("prefill_seconds", "ttft_seconds", "run_seconds", "decode_tokens_per_second", "peak_memory_bytes")


def cold_once(job: dict, variant: dict, threads: int, device: str) -> dict:
    """One cold run in the calling process (a fresh one: `cold_runs`): untimed load, then the variant's first run."""
    from kvstudy.models import load_model  # imports transformers: in the child only

    torch.set_num_threads(threads)
    dev = pick_device(device)
    attn = attention_for(variant["method"], variant["params"]) or job["attn_implementation"]
    t0 = time.perf_counter()
    model, _ = load_model(job["model_path"], job["dtype"], attn, str(dev), job.get("config_overrides"))
    load_seconds = time.perf_counter() - t0
    run = build_run(variant["method"], variant["params"], variant["compression_ratio"])
    ids = context_ids(model, job["length"], job["seed"], dev)
    r = timed_run(model, run, ids, job["decode_tokens"], TimingClock(dev, threads), PeakMemory(dev))
    return {**r, "load_seconds": load_seconds, "pid": os.getpid()}


def _in_fresh_process(job: dict, variant: dict, threads: int, device: str) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(cold_once, job, variant, threads, device).result()


def cold_runs(job: dict, threads: int, device: str) -> dict[str, dict]:
    """press -> its cold record {status, error, runs, summary} (docs/data-contracts.md, "Timing")."""
    entries = {v["press"]: {"status": "ok", "error": None, "runs": []} for v in job["variants"]}
    order = list(job["variants"])
    shuffle = random.Random(job["seed"] * 104_729 + job["length"])
    for _ in range(job["cold_repeats"]):
        shuffle.shuffle(order)
        for v in order:
            entry = entries[v["press"]]
            if entry["status"] != "ok":
                continue
            try:
                entry["runs"].append(derive(_in_fresh_process(job, v, threads, device), job["length"]))
            except Exception as e:  # noqa: BLE001 -- a variant that cannot run cold is recorded, the others go on
                traceback.print_exc()
                oom = isinstance(e, torch.OutOfMemoryError)
                entry.update(status="oom" if oom else "failed", error=error_line(e), runs=[])
    return {p: {**e, "summary": summarise(e["runs"], MEASURES) if e["status"] == "ok" else {}}
            for p, e in entries.items()}


def run_job(job: dict, threads: int = 1, device: str = "auto") -> dict:
    """A timing job with its cold runs where it asks for them (`cold_repeats`), measured first, while this process
    holds no model, then the warm protocol (kvstudy.timing.run_job)."""
    cold = cold_runs(job, threads, device) if job.get("cold_repeats") else None
    return timing.run_job(job, threads, device, cold=cold)
