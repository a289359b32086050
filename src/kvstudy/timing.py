"""The timing protocol: efficiency measured in controlled runs, apart from the quality samples (issue 15).

One timing job per (model, length): the model is loaded once (once per attention implementation its variants
need), every press variant of the study runs one untimed warm-up round, then R rounds (`timing.repeats`, default 5)
in which each variant, in a seeded shuffled order, prefills `length` fixed token ids under its press, takes one
question token (time to first token) and decodes `timing.decode_tokens` more tokens greedily (default 128, as
kvpress's speed-and-memory notebook does), end of sequence ignored: every run does the same work. Interleaving
the variants within a round spreads any slow spell of a shared machine over all of them instead of one.

Per variant and run: prefill seconds, compression overhead (its prefill less the full-cache prefill of the same
round), TTFT, decode tokens/s, peak memory above the weights (CUDA; none on CPU, kvstudy.measure.PeakMemory) and the
KV bytes after prefill (read from the cache); `run_seconds` is the whole call (TTFT + decoding). With `timing.cold:
true` each variant's first call after a model load is also timed first, in fresh processes (kvstudy.timing_cold,
whose run_job calls this module's), and recorded beside the warm runs as the variant's `cold`. Each measure's median
and 95% interval is `kvstudy.intervals.median_interval` (docs/statistics.md, "Timings"). Quality is not measured
here: the token ids are drawn from the model's vocabulary (seeded by the study's first seed and the length), never
read from a task.

The clock (`TimingClock`): on CUDA the wall clock, synchronised around every timer (kvstudy.measure.Clock). On a
CPU with one torch thread, the process's CPU time: on an idle machine it equals the wall time of a single-threaded
run, and other processes competing for the same cores do not inflate it (wall-clock medians of the same variant
differed by 40-70% between measurements minutes apart on a 2-core machine shared by four sessions:
docs/efficiency.md). With several CPU threads CPU time sums them, so the wall clock is used there.

`timed_run` is THE SEAM: the prefill + decode of one timed run, on kvstudy.presses primitives; kvstudy.engine may
later replace its body with the engine's press run (same arguments, same returned dict).
Contract: docs/data-contracts.md ("Timing"), schema src/kvstudy/schemas/timing.schema.json.
"""

from __future__ import annotations

import random
import time
import traceback

import torch

from kvstudy.grid import jobs as eval_jobs
from kvstudy.intervals import median_interval
from kvstudy.measure import Clock, PeakMemory, cache_size, now_iso, pick_device, provenance
from kvstudy.models.layout import body as decoder_body
from kvstudy.presses.variant import PressRun, attention_for, build_run

SCHEMA_VERSION = 1
PATH = "results/timing/{model}/{length}.json"
LOG = "logs/timing/{model}/{length}.log"
MEASURES = ("prefill_seconds", "overhead_seconds", "ttft_seconds", "run_seconds", "decode_tokens_per_second",
            "prefill_tokens_per_second", "peak_memory_bytes", "kv_bytes")
_MODEL_KEYS = ("model_path", "dtype", "attn_implementation", "config_overrides")


class TimingClock(Clock):
    """kvstudy.measure.Clock on CUDA; process CPU time on a single-threaded CPU run (module docstring)."""

    def __init__(self, device: torch.device, threads: int):
        super().__init__(device)
        self.cpu_time = device.type == "cpu" and threads == 1
        self.kind = "cuda wall (synchronised)" if self.cuda else "process cpu" if self.cpu_time else "wall"

    def now(self) -> float:
        return time.process_time() if self.cpu_time else super().now()


def jobs(config: dict) -> list[dict]:
    """One timing job per (model, timing length) of a study with `timing.enabled`: every press variant the study
    runs on that model (tuned variants aside: their parameters are chosen at run time)."""
    timing = config["timing"]
    if not timing["enabled"]:
        return []
    per_model: dict[str, dict] = {}
    for j in eval_jobs(config):
        if j.tuning:
            continue
        d = j.as_dict()  # a timing job is a dict of its own (a JSON job file), of plain values
        m = per_model.setdefault(j.model, {"model": j.model, **{k: d.get(k) for k in _MODEL_KEYS}, "variants": {}})
        m["variants"].setdefault(j.press, {k: d.get(k) for k in ("press", "method", "params", "compression_ratio")})
    seed = int(config["seeds"][0])
    return [{**{k: v for k, v in m.items() if k != "variants"}, "length": int(length), "seed": seed,
             "repeats": timing["repeats"], "decode_tokens": timing["decode_tokens"],
             "cold_repeats": timing["cold_repeats"] if timing["cold"] else 0,
             "variants": list(m["variants"].values())}
            for m in per_model.values() for length in timing["lengths"]]


def path(job: dict) -> str:
    return PATH.format(**job)


@torch.no_grad()
def timed_run(model, run, ids: torch.Tensor, decode_tokens: int, clock: Clock, mem: PeakMemory) -> dict:
    """THE SEAM (kvstudy.engine may replace this body): one timed run of a press variant (`run`, a
    kvstudy.presses.variant.PressRun). Prefill `ids[:, :-1]` into the variant's own cache under its press, feed
    the last id as the question (time to first token), then decode `decode_tokens` greedy tokens whatever they
    are (no stop). Times are taken with `clock` (it synchronises CUDA); `mem` is reset first."""
    device = model.device
    cache = run.new_cache(model)
    mem.reset()
    t0 = clock.now()
    with run.prefill(model, cache):
        decoder_body(model)(input_ids=ids[:, :-1], past_key_values=cache)
    t1 = clock.now()
    kv_bytes = cache_size(cache)[1]
    pos = torch.tensor([[ids.shape[1] - 1]], device=device)
    with run.decoding(model, cache):
        out = model(input_ids=ids[:, -1:], past_key_values=cache, position_ids=pos, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        t2 = clock.now()
        for _ in range(decode_tokens):
            pos = pos + 1
            out = model(input_ids=token, past_key_values=cache, position_ids=pos, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        t3 = clock.now()
    return {"prefill_seconds": t1 - t0, "ttft_seconds": t2 - t0, "decode_seconds": t3 - t2,
            "decode_tokens": decode_tokens, "kv_bytes": kv_bytes, "peak_memory_bytes": mem.peak()}


def context_ids(model, length: int, seed: int, device) -> torch.Tensor:
    """`length` + 1 token ids (context and one question token) drawn from the model's vocabulary."""
    vocab = model.config.get_text_config(decoder=True).vocab_size
    g = torch.Generator().manual_seed(seed * 1_000_003 + length)
    return torch.randint(0, vocab, (1, length + 1), generator=g).to(device)


def _reference(variants: list[dict]) -> dict | None:
    """The study's plain no_press variant, which is the full-cache reference of the overhead, if it has one."""
    return next((v for v in variants if v["method"] == "no_press"
                 and not any(v["params"].get(k) for k in ("quantization", "query_aware"))), None)


def measure_group(model, variants: list[dict], job: dict, device) -> dict[str, dict]:
    """press -> {status, error, runs}: one warm-up round then `repeats` interleaved rounds (module docstring)."""
    clock, mem = TimingClock(device, torch.get_num_threads()), PeakMemory(device)
    ids = context_ids(model, job["length"], job["seed"], device)
    ref = _reference(variants)
    entries = {v["press"]: {"variant": v, "status": "ok", "error": None, "runs": []} for v in variants}
    runs = {v["press"]: build_run(v["method"], v["params"], v["compression_ratio"]) for v in variants}
    ref_name = ref["press"] if ref else "(reference)"
    runs.setdefault(ref_name, PressRun())
    order = list(runs)
    shuffle = random.Random(job["seed"] * 7919 + job["length"])
    for rnd in range(job["repeats"] + 1):  # round 0: warm-up, not recorded
        shuffle.shuffle(order)
        got = {}
        for name in order:
            entry = entries.get(name)
            if entry is not None and entry["status"] != "ok":
                continue
            try:
                got[name] = timed_run(model, runs[name], ids, job["decode_tokens"], clock, mem)
            except Exception as e:  # noqa: BLE001 -- a press that cannot run is recorded, the others go on
                traceback.print_exc()
                oom = isinstance(e, torch.OutOfMemoryError)
                if oom and device.type == "cuda":
                    torch.cuda.empty_cache()
                target = entries.get(name) or entries.setdefault(name, {"variant": None, "runs": []})
                target.update(status="oom" if oom else "failed", error=error_line(e))
        if rnd == 0:
            continue
        for name, r in got.items():
            if name in entries and entries[name]["status"] == "ok":
                base = got.get(ref_name)
                r["overhead_seconds"] = r["prefill_seconds"] - base["prefill_seconds"] if base else None
                entries[name]["runs"].append(r)
    return entries


def error_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def derive(r: dict, length: int) -> dict:
    """A timed run with its rates and `run_seconds` (the whole call: prefill, question and decoding) added."""
    r["decode_tokens_per_second"] = r["decode_tokens"] / r["decode_seconds"] if r["decode_seconds"] > 0 else None
    r["prefill_tokens_per_second"] = length / r["prefill_seconds"] if r["prefill_seconds"] > 0 else None
    r["run_seconds"] = r["ttft_seconds"] + r["decode_seconds"]
    return r


def summarise(runs: list[dict], measures) -> dict:
    """measure -> the median and order-statistic interval of its runs (None: not measured, e.g. CPU peak)."""
    summary = {}
    for m in measures:
        iv = median_interval([r.get(m) for r in runs])
        summary[m] = None if iv.n == 0 else {"median": iv.median, "low": iv.low, "high": iv.high,
                                             "coverage": iv.coverage, "n": iv.n}
    return summary


def _finish(entry: dict, length: int) -> dict:
    """A variant's record: identity, status, every run and each measure's median and interval."""
    v, ok = entry["variant"], entry["status"] == "ok"
    runs = [derive(r, length) for r in entry["runs"]]
    return {**v, "status": entry["status"], "error": entry["error"], "runs": runs if ok else [],
            "summary": summarise(runs, MEASURES) if ok else {}}


def run_job(job: dict, threads: int = 1, device: str = "auto", cold: dict | None = None) -> dict:
    """Time every variant of one timing job; returns its result (docs/data-contracts.md, "Timing"). `cold`: the
    variants' cold records, measured before (kvstudy.timing_cold.run_job, which calls this), else none."""
    # lazy: the engine and the model loader import transformers; the Snakefile imports this module for the DAG
    from kvstudy.engine.group import free_memory
    from kvstudy.models import load_model

    torch.set_num_threads(threads)
    dev, started, t_start = pick_device(device), now_iso(), time.perf_counter()
    groups: dict[str, list[dict]] = {}
    for v in job["variants"]:  # a press that needs another attention gets its own model load
        groups.setdefault(attention_for(v["method"], v["params"]) or job["attn_implementation"],
                          []).append(v)
    records = {}
    for attn, variants in groups.items():
        model, _ = load_model(job["model_path"], job["dtype"], attn, str(dev),
                              job.get("config_overrides"))
        entries = measure_group(model, variants, job, dev)
        records.update({p: _finish(e, job["length"]) for p, e in entries.items() if e.get("variant")})
        del model
        free_memory(dev)
    return {
        "schema_version": SCHEMA_VERSION,
        "job": {k: job.get(k) for k in ("model", "model_path", "dtype", "attn_implementation", "length", "seed")},
        "protocol": {"repeats": job["repeats"], "decode_tokens": job["decode_tokens"], "warmup_rounds": 1,
                     "cold_repeats": job["cold_repeats"] if cold else 0,
                     "context_tokens": job["length"], "threads": threads, "order": "interleaved, shuffled per round",
                     "clock": TimingClock(dev, threads).kind,
                     "interval": "order-statistic interval of the median (kvstudy.intervals)"},
        "variants": [{**records[v["press"]], "cold": cold[v["press"]] if cold else None} for v in job["variants"]],
        "provenance": {**provenance(dev), "started": started, "finished": now_iso(),
                       "total_seconds": time.perf_counter() - t_start},
    }
