"""Eval jobs: (model, task, length, press variants, seed) -> one raw result per variant, written atomically.

`run_group` runs the variants of one cell with one model load and one prefill per sample and prefill class
(`kvstudy.engine`); `run_job` is a group of one. This module is generation (every task kind but perplexity, which is
`kvstudy.perplexity`): the loop mirrors kvpress's pipeline (the context prefilled under the press, then the question
fed with position ids continuing after the *original* context length, greedy decoding), written out in
`kvstudy.engine.generate` so every phase is timed and the cache read between prefill and question. The cache is the
model's own (sliding-window layers keep their window, `kvstudy.presses.cache`); sizes and the full-cache baseline
are measured against it.
"""

from __future__ import annotations

import torch

from kvstudy import attn_error
from kvstudy.atomic import write_atomic  # noqa: F401  (re-exported: tests and callers know it here)
from kvstudy.engine.generate import answer, ask  # noqa: F401  (ask: the question as every consumer feeds it)
from kvstudy.engine.stops import Stops
from kvstudy.engine.group import INJECT_FAIL, INJECT_OOM, prefix_ids  # noqa: F401  (test hooks, documented there)
from kvstudy.engine.group import asked_ids
from kvstudy.engine.job import pick_device, run_group as _run_group  # noqa: F401  (pick_device: re-exported)
from kvstudy.engine.prefill import OwnPrefill
from kvstudy.engine.result import JOB_KEYS, SCHEMA_VERSION, mean, timing  # noqa: F401  (re-exported)
from kvstudy.job import Job, as_jobs, thaw
from kvstudy.measure import cache_size, masked_fraction
from kvstudy.metrics import METRICS, score_with_detail
from kvstudy.models import load_model  # a module attribute: tests watch or cache model loads through it
from kvstudy.presses.variant import PressRun
from kvstudy.perplexity import Perplexity
from kvstudy.tasks import TASKS, get_task, thinking
from kvstudy.tasks.base import configured_chat_template
from kvstudy.tasks.base import stop_words as task_stop_words


@torch.no_grad()
def run_sample(model, tokenizer, press, sample, max_new_tokens: int, stops: Stops, clock, prefill=None) -> dict:
    """The variant's cache (from `prefill`, a prefill of the sample shared by its class, or its own prefill under
    the press), read; the question asked; the answer decoded greedily (under a decoding press).

    `press` is a `PressRun` (see `kvstudy.presses.variant`) or a bare kvpress press / None (a prefill press on a
    full-precision cache)."""
    run = press if isinstance(press, PressRun) else PressRun(press)
    prefill = prefill or OwnPrefill(model, prefix_ids(sample, run.query_aware), clock)
    cache, times = prefill.cache_for(run)
    kv_tokens, kv_bytes = cache_size(cache)
    masked = masked_fraction(model, cache) if run.masking else 0.0
    t_ready = clock.now()
    generated, t_first, t_end = answer(model, run, cache, len(prefill), asked_ids(sample, run.query_aware),
                                       max_new_tokens, stops, clock)
    kv_tokens_final, kv_bytes_final = cache_size(cache)
    return {
        "prediction": stops.prediction(tokenizer, generated),
        "input_tokens": len(sample.context_ids) + len(sample.question_ids),
        "context_tokens": len(sample.context_ids),
        "prefill_tokens": len(prefill),  # the tokens the press saw: context (+ question when query-aware)
        "kv_tokens": kv_tokens,
        "kv_bytes": kv_bytes,
        "kv_tokens_attended": kv_tokens * (1 - masked),  # per-head masking presses keep but ignore keys
        "kv_tokens_final": kv_tokens_final,  # after decoding (differs from kv_tokens for decoding-time eviction)
        "kv_bytes_final": kv_bytes_final,
        **timing(times, t_ready, t_first, t_end),
        "decode_tokens": len(generated) - 1,
    }


def stop_words(task, job: Job) -> list[str]:
    """The task's stop words (kvstudy.tasks.base.stop_words), the job's `eval.stop_words` where it sets none;
    kvstudy.grid writes the same into the job, so the raw result says what generation used."""
    return task_stop_words(task, thaw(job.stop_words))


class Generation:
    """The runner of generation tasks (kvstudy.engine.job): samples built once, a row per variant and sample."""

    def __init__(self, job: Job, model, tokenizer, dev):
        self.job, self.model, self.tokenizer, self.dev = job, model, tokenizer, dev
        self.task = get_task(job.task_kind, thaw(job.task_params))
        # the model's setting, `none` where the task's is (as kvstudy.grid writes it); every task but perplexity
        self.task.chat_template = configured_chat_template(type(self.task), job.task_params,
                                                           job.chat_template or "auto")
        self.samples = self.task.samples(tokenizer, job.length, job.seed)
        self.judged = getattr(self.task, "judged", False)  # scored after generation by a judge model (helmet_cite)
        self.stops = Stops.of(tokenizer, stop_words(self.task, job), getattr(model, "generation_config", None))
        self.thinks = thinking.model_thinks(self.task, tokenizer)  # a reasoning model's template, on this task

    def one(self, run, prefill, s, clock) -> dict:
        # a dataset row may set its own generation budget (kvpress format's max_new_tokens column)
        budget = thinking.budget(self.task, s, self.thinks)
        r = run_sample(self.model, self.tokenizer, run, s, budget, self.stops, clock, prefill)
        r.update(id=s.id, references=s.references, depth=s.depth, score=None)
        r.update(thinking.answer(self.task, self.tokenizer, s, r["prediction"]))  # thoughts are not scored
        if not self.judged:
            r["score"], detail = score_with_detail(self.task.metric, r["answer"], s.references)
            if detail is not None:  # why a metric scored what it did (code execution: compile error, timeout, ...)
                r["score_detail"] = detail
        r.update({m: METRICS[m](r["answer"], s.references) for m in self.task.metrics})  # extra metrics
        r["meta"] = s.meta  # what the task recorded: truncation, needle offsets, passages kept
        if self.job.attn_error:  # tuning objective: attention-output error of the question
            r["attn_error"] = attn_error.measure(self.model, run, s, prefill)
        return r

    def full_tokens(self, v) -> int:
        # the uncompressed cache is what was really prefilled: a real-data context can be shorter than the length,
        # and a query-aware variant prefills the question too
        return round(mean(v.rows, "prefill_tokens")) if v.rows else self.job.length

    def result(self, v) -> dict:
        job = v.job
        return {
            "job": {"chat_template": self.task.chat_template, "task_resolved": self.task.resolved(self.tokenizer)}
            | ({"config_overrides": thaw(job.config_overrides)} if job.config_overrides else {}),
            "quality": {"metric": self.task.metric, "score": mean(v.rows, "score"), "n": len(v.rows)}
            | ({"sub_scores": self.extra_means(v.rows)} if self.task.metrics else {}),
            "samples": v.rows,
            "fidelity": attn_error.summary(v.rows) if job.attn_error else None,
        }

    def extra_means(self, rows) -> dict:
        """The means of the task's extra metrics over the rows: quality.sub_scores."""
        return {m: mean(rows, m) for m in self.task.metrics}

    def judge(self, v) -> dict:
        """Quality entries of a judged task (helmet_cite): the judge scores the rows in place; its sub-scores join
        the extra metrics'."""
        out = self.task.judge_rows(v.rows, self.dev, v.job.task) | {"score": mean(v.rows, "score")}
        return out | {"sub_scores": self.extra_means(v.rows) | out.get("sub_scores", {})}


def runner_for(job: Job):
    if getattr(TASKS.get(job.task_kind), "kind", "generate") == "perplexity":
        return Perplexity
    return Generation


def run_group(jobs: list[Job | dict], threads: int = 1, device: str = "auto",
              failures: dict | None = None) -> list[dict]:
    """The raw results of a group of jobs that differ in their press only (one cell), in order; `failures` gets
    the traceback of each job that raised, by index. A dict job (hand-written, a test's) is made a Job here."""
    jobs = as_jobs(jobs)
    return _run_group(jobs, runner_for(jobs[0]), lambda *a: load_model(*a), threads, device, failures)


def run_job(job: Job | dict, threads: int = 1, device: str = "auto") -> dict:
    """Evaluate one job (kvstudy.grid's Job, or its dict) and return its raw result."""
    return run_group([job], threads, device)[0]
