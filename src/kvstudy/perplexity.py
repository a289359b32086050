"""Perplexity under compression, and fidelity to the uncompressed model.

The context is prefilled under the press (the cache is compressed as each layer finishes), then the continuation
is teacher-forced in chunks against that compressed cache, with position ids continuing after the *original*
context length (as kvpress's pipeline does for questions). Every scored token therefore attends to the
compressed cache. One forward pass over context + continuation would score every press identically, since
kvpress presses only compress what is written to the cache — that is the bug this module exists to avoid.

Scored tokens: continuation tokens 1..C-1. Token 0 is predicted by the last context position, whose logits come
from the prefill pass, which attends to the full context before compression; it is fed, not scored.

Fidelity: the same sample's uncompressed cache (a copy of the prefill the variant shares, or a prefill without a
press) and the compressed one are fed the same chunks in lockstep, so only one chunk of logits per run is alive at
a time. Per token: KL(full || compressed) in nats and whether the
two argmaxes agree. Written by hand: no library scores a teacher-forced continuation against a pressed cache.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from kvstudy.engine.job import run_group
from kvstudy.engine.prefill import OwnPrefill
from kvstudy.engine.result import timing
from kvstudy.job import Job, thaw
from kvstudy.measure import Clock, cache_size, masked_fraction
from kvstudy.models import load_model
from kvstudy.presses.cache import uneven
from kvstudy.presses.masking import suspended
from kvstudy.presses.variant import PressRun
from kvstudy.tasks import get_task


@torch.no_grad()
def prefill(model, context_ids: list[int], run=None):
    """The cache of `context_ids` prefilled under a press variant (`PressRun`; None: uncompressed, full precision).

    The cache is the model's own (sliding-window layers keep their window); a quantized variant quantizes its full
    layers; a decoding-time press does nothing here (it acts while the continuation is fed)."""
    run = run if isinstance(run, PressRun) else PressRun(press=run)  # None or a bare kvpress press
    return OwnPrefill(model, context_ids, Clock(model.device)).cache_for(run)[0]


@torch.no_grad()
def score_continuation(model, cache, n_ctx: int, continuation: list[int], chunk_size: int, ref_cache=None,
                       clock: Clock | None = None, run=None) -> dict:
    """Teacher-force `continuation` after a cache of a context of `n_ctx` tokens; NLL of tokens 1..C-1.

    With `ref_cache` (the uncompressed cache of the same context) also KL(ref || cache) and top-1 agreement.
    A decoding press is active over the whole continuation (it counts its steps towards `compression_interval`
    and acts on `cache` only); the reference is fed as if no key were masked.
    """
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


def run_sample(model, run, sample, chunk_size: int, fidelity: bool, clock: Clock, prefill=None) -> dict:
    """The variant's cache of the sample's context (from `prefill`, shared by its class, or its own), then the
    continuation teacher-forced against it; with `fidelity`, also against the uncompressed cache (a copy of the shared
    prefill, or a prefill of its own outside the timers; its chunk forwards count in decode_seconds)."""
    n_ctx = len(sample.context_ids)
    prefill = prefill or OwnPrefill(model, sample.context_ids, clock)
    ref = prefill.full() if fidelity else None
    cache, times = prefill.cache_for(run)
    kv_tokens, kv_bytes = cache_size(cache)
    masked = masked_fraction(model, cache) if run.masking else 0.0
    t_ready = clock.now()
    r = score_continuation(model, cache, n_ctx, sample.question_ids, chunk_size, ref, clock, run)
    t_end = clock.now()
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
        # ttft: prefill (+ compression) and the first chunk; decode_seconds: every chunk's forward passes
        **timing(times, t_ready, r["first_logits_at"] or t_end, t_end),
        "decode_seconds": t_end - t_ready,
        "decode_tokens": len(sample.question_ids),
        "chunk_size": r["chunk_size"],
    }
    if fidelity:
        row.update(kl=r["kl_sum"] / n, top1_agreement=r["top1_agree"] / n, kl_sum=r["kl_sum"], top1_agree=r["top1_agree"])
    return row


class Perplexity:
    """The runner of perplexity tasks (kvstudy.engine.job): a raw result of the same contract as generation's."""

    def __init__(self, job: Job, model, tokenizer, dev):
        self.job, self.model, self.tokenizer = job, model, tokenizer
        self.task = get_task(job.task_kind, thaw(job.task_params))
        self.samples = self.task.samples(tokenizer, job.length, job.seed)

    def one(self, run, prefill, s, clock) -> dict:
        if run.query_aware:
            raise ValueError("query_aware: a perplexity task has no question to show the press")
        return run_sample(self.model, run, s, self.task.chunk_size, self.task.fidelity, clock, prefill)

    def full_tokens(self, v) -> int:
        return self.job.length

    def result(self, v) -> dict:
        rows = v.rows
        n_tok = sum(r["scored_tokens"] for r in rows)
        # corpus perplexity: token-weighted over every scored token (per-sample perplexities are in the rows)
        ppl = math.exp(sum(r["nll_sum"] for r in rows) / n_tok) if rows else None
        fidelity = None
        if rows and self.task.fidelity:
            fidelity = {"reference": "no_press", "kl": sum(r["kl_sum"] for r in rows) / n_tok,
                        "top1_agreement": sum(r["top1_agree"] for r in rows) / n_tok, "n_tokens": n_tok}
        return {
            "job": {"task_resolved": self.task.resolved(self.tokenizer)},
            "quality": {"metric": "perplexity", "score": ppl, "n": len(rows), "higher_is_better": False,
                        "scored_tokens": n_tok},
            "samples": rows,
            "fidelity": fidelity,
        }


def run_perplexity_job(job: Job | dict, threads: int = 1, device: str = "auto") -> dict:
    """A perplexity job (task kind `perplexity`) -> a raw result of the same contract as a generation job."""
    return run_group([job], Perplexity, load_model, threads, device)[0]
