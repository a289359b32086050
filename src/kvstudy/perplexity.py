"""Perplexity under compression, and fidelity to the uncompressed model.

The context is prefilled under the press (the cache is compressed as each layer finishes), then the continuation
is teacher-forced in chunks against that compressed cache, with position ids continuing after the *original*
context length (as kvpress's pipeline does for questions). Every scored token therefore attends to the
compressed cache. One forward pass over context + continuation would score every press identically, since
kvpress presses only compress what is written to the cache — that is the bug this module exists to avoid.

Scored tokens: continuation tokens 1..C-1. Token 0 is predicted by the last context position, whose logits come
from the prefill pass, which attends to the full context before compression; it is fed, not scored.

Fidelity: the same sample is prefilled without a press and both caches are fed the same chunks in lockstep, so
only one chunk of logits per run is alive at a time. Per token: KL(full || compressed) in nats and whether the
two argmaxes agree. Written by hand: no library scores a teacher-forced continuation against a pressed cache.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F

from kvstudy.measure import Clock, cache_size, masked_fraction, now_iso, provenance


@torch.no_grad()
def prefill(model, context_ids: list[int], run=None):
    """The cache of `context_ids` prefilled under a press variant (`PressRun`; None: uncompressed, full precision).

    The cache is the model's own (sliding-window layers keep their window); a quantized variant quantizes its full
    layers; a decoding-time press does nothing here (it acts while the continuation is fed)."""
    from kvstudy.presses.variant import PressRun

    run = run if isinstance(run, PressRun) else PressRun(press=run)  # None or a bare kvpress press
    cache = run.new_cache(model)
    ids = torch.tensor([context_ids], device=model.device)
    with run.prefill(model, cache):
        model.model(input_ids=ids, past_key_values=cache)
    return cache


@torch.no_grad()
def score_continuation(model, cache, n_ctx: int, continuation: list[int], chunk_size: int, ref_cache=None,
                       clock: Clock | None = None, run=None) -> dict:
    """Teacher-force `continuation` after a cache of a context of `n_ctx` tokens; NLL of tokens 1..C-1.

    With `ref_cache` (the uncompressed cache of the same context) also KL(ref || cache) and top-1 agreement.
    A decoding press is active over the whole continuation (it counts its steps towards `compression_interval`
    and acts on `cache` only); the reference is fed as if no key were masked.
    """
    from kvstudy.presses.cache import uneven
    from kvstudy.presses.masking import suspended

    if uneven(cache):  # per-layer budgets (PyramidKV): transformers cannot mask a multi-token step; go token by token
        chunk_size = 1
    if run is not None and run.phase == "decoding":  # eviction while generating (H2O, CAB): one token per step
        chunk_size = 1
    dev = model.device
    cont = torch.tensor([continuation], device=dev)
    n = cont.shape[1]
    nll = kl = 0.0
    agree = scored = 0
    first_logits_at = None
    with run.decoding(model, cache) if run is not None else contextlib.nullcontext():
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            ids = cont[:, a:b]
            pos = torch.arange(n_ctx + a, n_ctx + b, device=dev).unsqueeze(0)
            # position j predicts continuation[j + 1]; the chunk's last position predicts the next chunk's first token
            m = min(b, n - 1) - a
            if m <= 0:  # the last token of the continuation predicts nothing we hold
                continue
            logits = model(input_ids=ids, past_key_values=cache, position_ids=pos).logits
            logp = F.log_softmax(logits[0, :m].float(), -1)
            if first_logits_at is None and clock is not None:
                first_logits_at = clock.now()
            target = cont[0, a + 1 : a + 1 + m]
            nll -= float(logp.gather(-1, target[:, None]).sum())
            scored += m
            if ref_cache is not None:
                with suspended(model):
                    ref = model(input_ids=ids, past_key_values=ref_cache, position_ids=pos).logits[0, :m].float()
                ref_logp = F.log_softmax(ref, -1)
                # per-token KL, clamped at 0: rounding can make a near-identical pair a hair negative
                kl += float((ref_logp.exp() * (ref_logp - logp)).sum(-1).clamp_min(0).sum())
                agree += int((ref_logp.argmax(-1) == logp.argmax(-1)).sum())
    out = {"nll_sum": nll, "scored_tokens": scored, "first_logits_at": first_logits_at, "chunk_size": chunk_size}
    if ref_cache is not None:
        out.update(kl_sum=kl, top1_agree=agree)
    return out


def run_sample(model, run, sample, chunk_size: int, fidelity: bool, clock: Clock) -> dict:
    n_ctx = len(sample.context_ids)
    # the uncompressed reference is prefilled outside the timers; its chunk forwards count in decode_seconds
    ref = prefill(model, sample.context_ids, None) if fidelity else None
    t0 = clock.now()
    cache = prefill(model, sample.context_ids, run)
    t1 = clock.now()
    kv_tokens, kv_bytes = cache_size(cache)
    masked = masked_fraction(model, cache) if run.masking else 0.0
    t2 = t1
    r = score_continuation(model, cache, n_ctx, sample.question_ids, chunk_size, ref, clock, run)
    t3 = clock.now()
    kv_tokens_final, kv_bytes_final = cache_size(cache)
    n = r["scored_tokens"]
    row = {
        "id": sample.id,
        "score": math.exp(r["nll_sum"] / n),
        "prediction": "",
        "references": [],
        "depth": None,
        "nll": r["nll_sum"] / n,
        "scored_tokens": n,
        "nll_sum": r["nll_sum"],
        "input_tokens": n_ctx + len(sample.question_ids),
        "context_tokens": n_ctx,
        "kv_tokens": kv_tokens,
        "kv_bytes": kv_bytes,
        "kv_tokens_attended": kv_tokens * (1 - masked),  # per-head masking presses keep but ignore keys
        "kv_tokens_final": kv_tokens_final,  # after the continuation: decoding-time eviction keeps it bounded
        "kv_bytes_final": kv_bytes_final,
        "prefill_seconds": t1 - t0,
        "ttft_seconds": (r["first_logits_at"] or t3) - t0,
        "decode_tokens": len(sample.question_ids),
        "chunk_size": r["chunk_size"],
        "decode_seconds": t3 - t2,
    }
    if fidelity:
        row.update(kl=r["kl_sum"] / n, top1_agreement=r["top1_agree"] / n, kl_sum=r["kl_sum"], top1_agree=r["top1_agree"])
    return row


def run_perplexity_job(job: dict, threads: int = 1, device: str = "auto") -> dict:
    """A perplexity job (task kind `perplexity`) -> a raw result of the same contract as a generation job."""
    from kvstudy.evaluate import JOB_KEYS, SCHEMA_VERSION, efficiency, run_samples, setup, warm_up

    started, t_start = now_iso(), time.perf_counter()
    dev, run, attn, model, tokenizer, task = setup(job, threads, device)
    if run.query_aware:
        raise ValueError("query_aware: a perplexity task has no question to show the press")
    samples = task.samples(tokenizer, job["length"], job["seed"])
    clock, mem = Clock(dev), warm_up(model, samples, dev)
    rows, status, error = run_samples(
        job, dev, samples, lambda s: run_sample(model, run, s, task.chunk_size, task.fidelity, clock))

    n_tok = sum(r["scored_tokens"] for r in rows)
    # corpus perplexity: token-weighted over every scored token (per-sample perplexities are in the rows)
    ppl = math.exp(sum(r["nll_sum"] for r in rows) / n_tok) if rows else None
    fidelity = None
    if rows and task.fidelity:
        fidelity = {
            "reference": "no_press",
            "kl": sum(r["kl_sum"] for r in rows) / n_tok,
            "top1_agreement": sum(r["top1_agree"] for r in rows) / n_tok,
            "n_tokens": n_tok,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "job": {k: job[k] for k in JOB_KEYS} | {"task_resolved": task.resolved(tokenizer)},
        "status": status,
        "error": error,
        "quality": {"metric": "perplexity", "score": ppl, "n": len(rows), "higher_is_better": False,
                    "scored_tokens": n_tok},
        "samples": rows,
        "efficiency": efficiency(rows, model, job["length"], attn, mem, t_start, attended=True),
        "fidelity": fidelity,
        "provenance": {**provenance(dev), "started": started, "finished": now_iso()},
    }
