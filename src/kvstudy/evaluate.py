"""One eval job: (model, task, length, press variant, seed) -> one raw result JSON, written atomically.

The loop mirrors kvpress's pipeline (prefill the context under the press, then feed the question with position ids
continuing after the *original* context length, greedy decoding) but is written out here so every phase can be
timed and the cache read between prefill and question. The cache is the model's own (sliding-window layers keep
their window, `kvstudy.presses.cache`); sizes and the full-cache baseline are measured against it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from kvstudy import attn_error
from kvstudy.measure import (Clock, PeakMemory, cache_size, full_cache_bytes, full_cache_tokens, masked_fraction,
                             now_iso, provenance)
from kvstudy.metrics import score_with_detail
from kvstudy.models import load_model
from kvstudy.presses.variant import PressRun, attention_for, build_run
from kvstudy.tasks import get_task

SCHEMA_VERSION = 1
# Test hooks: a CUDA out-of-memory cannot happen on a CPU, so tests simulate one in the press variants whose name
# matches the glob in KVSTUDY_INJECT_OOM (e.g. "knorm-*"), at the first sample; KVSTUDY_INJECT_FAIL makes
# matching jobs fail outright (a crash that must not cost the other jobs their results).
INJECT_OOM = "KVSTUDY_INJECT_OOM"
INJECT_FAIL = "KVSTUDY_INJECT_FAIL"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def stop_token_ids(tokenizer, words: list[str], generation_config=None) -> set[int]:
    """Token ids that end an answer: the tokenizer's end of sequence, the model's generation_config end ids (as
    `generate` uses: an instruct model's end-of-turn token is often only there, e.g. Llama-3.1's <|eot_id|>,
    Qwen2.5's <|endoftext|>), and each stop word that is a single token."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else (eos or []))
    for w in words:
        enc = tokenizer.encode(w, add_special_tokens=False)
        if len(enc) == 1:
            ids.add(enc[0])
    return ids


def ask(model, q: torch.Tensor, cache, pos: torch.Tensor):
    """Feed the question against the cache. Presses with per-layer budgets (PyramidKV) leave full layers of
    different lengths, for which transformers cannot build one attention mask for several new tokens (a known
    limitation): there the question goes in one token at a time, which computes the same thing."""
    from kvstudy.presses.cache import uneven

    if not uneven(cache) or q.shape[1] == 1:
        return model(input_ids=q, past_key_values=cache, position_ids=pos, logits_to_keep=1)
    for i in range(q.shape[1]):
        out = model(input_ids=q[:, i : i + 1], past_key_values=cache, position_ids=pos[:, i : i + 1], logits_to_keep=1)
    return out


@torch.no_grad()
def run_sample(model, tokenizer, press, sample, max_new_tokens: int, stop_ids: set[int], clock: Clock) -> dict:
    """Prefill (under a prefill press), read the cache, ask the question, decode greedily (under a decoding press).

    `press` is a `PressRun` (see `kvstudy.presses.variant`) or a bare kvpress press / None (a prefill press on a
    full-precision cache)."""
    run = press if isinstance(press, PressRun) else PressRun(press)
    device = model.device

    # query-aware: the press sees the question appended to the context; the question is asked again afterwards
    prefix = sample.context_ids + (sample.question_ids if run.query_aware else [])
    ctx = torch.tensor([prefix], device=device)
    n_ctx = ctx.shape[1]
    cache = run.new_cache(model)
    t0 = clock.now()
    with run.prefill(model, cache):
        model.model(input_ids=ctx, past_key_values=cache)
    t1 = clock.now()
    kv_tokens, kv_bytes = cache_size(cache)
    masked = masked_fraction(model, cache) if run.masking else 0.0

    q = torch.tensor([sample.question_ids], device=device)
    with run.decoding(model, cache):
        pos = torch.arange(n_ctx, n_ctx + q.shape[1], device=device).unsqueeze(0)
        out = ask(model, q, cache, pos)
        generated = [int(out.logits[0, -1].argmax())]
        t2 = clock.now()
        pos = pos[:, -1:] + 1
        while len(generated) < max_new_tokens and generated[-1] not in stop_ids:
            out = model(
                input_ids=torch.tensor([[generated[-1]]], device=device), past_key_values=cache, position_ids=pos
            )
            generated.append(int(out.logits[0, -1].argmax()))
            pos = pos + 1
    t3 = clock.now()
    kv_tokens_final, kv_bytes_final = cache_size(cache)
    answer = generated[:-1] if generated[-1] in stop_ids else generated
    return {
        "prediction": tokenizer.decode(answer, skip_special_tokens=True).strip(),
        "input_tokens": len(sample.context_ids) + q.shape[1],
        "context_tokens": len(sample.context_ids),
        "prefill_tokens": n_ctx,  # the tokens the press saw: context (+ question when query-aware)
        "kv_tokens": kv_tokens,
        "kv_bytes": kv_bytes,
        "kv_tokens_attended": kv_tokens * (1 - masked),  # per-head masking presses keep but ignore keys
        "kv_tokens_final": kv_tokens_final,  # after decoding (differs from kv_tokens for decoding-time eviction)
        "kv_bytes_final": kv_bytes_final,
        "prefill_seconds": t1 - t0,
        "ttft_seconds": t2 - t0,
        "decode_tokens": len(generated) - 1,
        "decode_seconds": t3 - t2,
    }


def stop_words(task, job: dict) -> list[str]:
    """The task's stop words (kvstudy.tasks.base.stop_words), the job's `eval.stop_words` where it sets none;
    kvstudy.grid writes the same into the job, so the raw result records what generation used."""
    from kvstudy.tasks.base import stop_words as task_stop_words

    return task_stop_words(task, job.get("stop_words", [".", "\n"]))


def run_job(job: dict, threads: int = 1, device: str = "auto") -> dict:
    """Evaluate one job (a dict from `kvstudy.grid`) and return its raw result."""
    # --- task kinds with a loop of their own (issue 4: perplexity under compression) ---
    from kvstudy.tasks import TASKS

    if getattr(TASKS.get(job["task_kind"]), "kind", "generate") == "perplexity":
        from kvstudy.perplexity import run_perplexity_job

        return run_perplexity_job(job, threads=threads, device=device)
    # --- end of task-kind dispatch ---
    started, t_start = now_iso(), time.perf_counter()
    dev, press, attn, model, tokenizer, task = setup(job, threads, device)
    task.chat_template = job.get("chat_template", "auto")  # per model (issue 4); every task but perplexity
    samples = task.samples(tokenizer, job["length"], job["seed"])
    judged = getattr(task, "judged", False)  # scored after generation by a judge model (helmet_cite)
    stops = stop_token_ids(tokenizer, stop_words(task, job), getattr(model, "generation_config", None))
    clock, mem = Clock(dev), warm_up(model, samples, dev)

    def one(s):
        # a dataset row may set its own generation budget (kvpress format's max_new_tokens column)
        r = run_sample(model, tokenizer, press, s, s.meta.get("max_new_tokens", task.max_new_tokens), stops, clock)
        r.update(id=s.id, references=s.references, depth=s.depth, score=None)
        if not judged:
            r["score"], detail = score_with_detail(task.metric, r["prediction"], s.references)
            if detail is not None:  # why a metric scored what it did (code execution: compile error, timeout, ...)
                r["score_detail"] = detail
        r["meta"] = s.meta  # what the task recorded: truncation, needle offsets, passages kept (issue 4)
        if job.get("attn_error"):  # tuning objective: attention-output error of the question (kvstudy.attn_error)
            r["attn_error"] = attn_error.measure(model, press, s)
        return r

    rows, status, error = run_samples(job, dev, samples, one)
    # the uncompressed cache is what was really prefilled: a real-data context can be shorter than the length,
    # and a query-aware variant prefills the question too
    full_tokens = round(mean(rows, "prefill_tokens")) if rows else job["length"]
    eff = efficiency(rows, model, full_tokens, attn, mem, t_start, attended=True)
    quality = {"metric": task.metric}
    # --- judged tasks (helmet_cite): the evaluated model is freed, then the judge loads on the same device and
    # scores every row; its time and memory are not in `efficiency` (measured above) ---
    if judged and rows:
        del model, press
        free_memory(dev)
        quality |= task.judge_rows(rows, dev, job["task"])
    # --- end of judged tasks ---
    quality |= {"score": mean(rows, "score"), "n": len(rows)}
    return {
        "schema_version": SCHEMA_VERSION,
        "job": {k: job[k] for k in JOB_KEYS}
        | {"chat_template": task.chat_template}
        | {"task_resolved": task.resolved(tokenizer)}  # what the task was on this model (vocab: auto resolved)
        | ({"config_overrides": job["config_overrides"]} if job.get("config_overrides") else {}),
        "status": status,
        "error": error,
        "quality": quality,
        "samples": rows,
        "efficiency": eff,
        "fidelity": attn_error.summary(rows) if job.get("attn_error") else None,
        "provenance": {**provenance(dev), "started": started, "finished": now_iso()},
    }


# --- what every job kind shares (generation here, perplexity in kvstudy.perplexity) ---------------------------

JOB_KEYS = ("model", "model_path", "task", "task_params", "length", "press", "method", "params",
            "compression_ratio", "seed")


def setup(job: dict, threads: int, device: str):
    """(device, press variant, attention, model, tokenizer, task) of a job; a failure injected by a test first."""
    if os.environ.get(INJECT_FAIL) and fnmatch.fnmatch(job["press"], os.environ[INJECT_FAIL]):
        raise RuntimeError(f"failure injected by {INJECT_FAIL}={os.environ[INJECT_FAIL]}")
    torch.set_num_threads(threads)
    dev = pick_device(device)
    press = build_run(job["method"], job["params"], job["compression_ratio"])
    # a press that needs another attention (observed_attention: eager) gets the model loaded with it, always
    attn = attention_for(job["method"], job["params"]) or job.get("attn_implementation", "sdpa")
    model, tokenizer = load_model(job["model_path"], job.get("dtype", "auto"), attn, str(dev),
                                  job.get("config_overrides"))
    return dev, press, attn, model, tokenizer, get_task(job["task_kind"], job["task_params"])


def warm_up(model, samples, dev) -> PeakMemory:
    """The first forward pays one-time costs (kernel selection, allocator) that are not the press's; the peak
    memory is measured from after it."""
    mem = PeakMemory(dev)
    with torch.no_grad():
        model(input_ids=torch.tensor([samples[0].context_ids[:64]], device=dev))
    mem.reset()
    return mem


def run_samples(job: dict, dev, samples, one) -> tuple[list[dict], str, str | None]:
    """(rows, status, error): `one(sample)` for every sample; a CUDA out-of-memory is data, not a failure."""
    inject = os.environ.get(INJECT_OOM)
    try:
        if inject and fnmatch.fnmatch(job["press"], inject):
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {INJECT_OOM}={inject})")
        return [one(s) for s in samples], "ok", None
    except torch.OutOfMemoryError as e:  # record it, free memory, fail nothing else
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return [], "oom", str(e).splitlines()[0]


def free_memory(dev) -> None:
    import gc

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def mean(rows: list[dict], key: str):
    return sum(r[key] for r in rows) / len(rows) if rows else None


def efficiency(rows, model, full_tokens: int, attn: str, mem: PeakMemory, t_start: float, attended: bool) -> dict:
    """The result's `efficiency`: means over the samples' rows against the model's own uncompressed cache of
    `full_tokens` prefilled tokens; `attended` adds the fraction of the cache attention still sees (rows with
    `kv_tokens_attended`)."""
    decode_s = sum(r["decode_seconds"] for r in rows)
    # the baseline is the model's own uncompressed cache: sliding-window layers hold only their window
    full = full_cache_tokens(model, full_tokens)
    out = {
        "kv_tokens_kept": mean(rows, "kv_tokens"),
        "kv_tokens_full": full,
        "kv_fraction_kept": mean(rows, "kv_tokens") / full if rows else None,
    }
    if attended:  # masking presses (AdaKV, DuoAttention): fraction of entries attention still sees; bytes stay full
        out["kv_fraction_attended"] = mean(rows, "kv_tokens_attended") / full if rows else None
    return out | {
        "kv_bytes": mean(rows, "kv_bytes"),
        "kv_bytes_full": full_cache_bytes(model, full_tokens),
        "kv_tokens_final": mean(rows, "kv_tokens_final"),
        "kv_bytes_final": mean(rows, "kv_bytes_final"),
        "attn_implementation": attn,
        "peak_memory_bytes": mem.peak(),
        "peak_memory_kind": mem.kind,
        "prefill_seconds": mean(rows, "prefill_seconds"),
        "ttft_seconds": mean(rows, "ttft_seconds"),
        "decode_tokens_per_second": sum(r["decode_tokens"] for r in rows) / decode_s if decode_s > 0 else None,
        "total_seconds": time.perf_counter() - t_start,
    }


def write_atomic(obj: dict, out: Path) -> None:
    """Write to a temp file in the same directory, then rename: a killed job never leaves a partial result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        mask = os.umask(0)  # mkstemp makes 0600 files; a result gets the mode open() would give it
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
