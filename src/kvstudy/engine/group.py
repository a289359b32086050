"""A group of press variants over one set of samples: each sample prefilled once per prefill class.

Samples are the outer loop, so a sample's shared prefill is held only while its variants use it. Within a class
(`PressRun.prefill_class`: attention implementation, query-aware prefix) of two or more prefill-invariant variants,
the sample is prefilled once (`SharedPrefill`) and each variant's cache derived from it; a class of one variant, or a
variant that is not prefill-invariant, prefills on its own under its press (`OwnPrefill`), as a one-variant job does.

Errors stay with their variant. A variant that raises is `failed` (its traceback kept for its log) and the others go
on. A CUDA out-of-memory is data: where it happens beside a shared prefill (which holds the uncompressed cache the
variant would not hold alone), the variant is run again on its own once its class is done, and only an
out-of-memory there makes it `oom`; where the shared prefill itself runs out of memory, that sample's variants each
prefill on their own. So a variant's status is the one it would have had in a job of its own.
"""

from __future__ import annotations

import fnmatch
import os
import time
import traceback
from dataclasses import dataclass, field

import torch

from kvstudy.engine.prefill import OwnPrefill, SharedPrefill, union
from kvstudy.failed import error_line
from kvstudy.job import Job, thaw
from kvstudy.presses.flex_attention import prepare
from kvstudy.presses.variant import build_run

# Test hooks: a CUDA out-of-memory cannot happen on a CPU, so tests simulate one in the press variants whose name
# matches the glob in KVSTUDY_INJECT_OOM (e.g. "knorm-*"), at their first sample; KVSTUDY_INJECT_FAIL makes
# matching variants fail outright (a crash that must not cost the other variants their results).
INJECT_OOM = "KVSTUDY_INJECT_OOM"
INJECT_FAIL = "KVSTUDY_INJECT_FAIL"


@dataclass
class Variant:
    """One press variant of a group job and what became of it."""

    job: Job
    run: object = None  # kvstudy.presses.variant.PressRun; None once it failed to resolve
    attention: str = "sdpa"  # what it ran with
    rows: list[dict] = field(default_factory=list)
    status: str = "ok"  # ok | oom | failed
    error: str | None = None
    trace: str | None = None  # a failure's traceback, for the variant's log
    peak: int | None = None  # peak device memory over the stages that produced its rows (shared prefill
    # included); None where none is measured (CPU: kvstudy.measure.PeakMemory)
    seconds: float = 0.0  # wall time spent on this variant alone
    retry: bool = False  # ran out of memory beside a shared prefill: run again on its own

    @property
    def live(self) -> bool:
        return self.status == "ok" and not self.retry

    def fail(self, exc: BaseException) -> None:
        self.status, self.error, self.trace, self.rows = "failed", error_line(exc), traceback.format_exc(), []

    def out_of_memory(self, exc: BaseException, dev) -> None:
        self.status, self.error, self.rows = "oom", str(exc).splitlines()[0], []
        free_memory(dev)


def injected(job: Job, name: str) -> bool:
    return bool(os.environ.get(name)) and fnmatch.fnmatch(job.press, os.environ[name])


def resolve(job: Job) -> Variant:
    """The job's variant with its press run built; a variant whose press cannot be built (or a failure injected by
    a test) is failed, not the group."""
    v = Variant(job)
    try:
        if injected(job, INJECT_FAIL):
            raise RuntimeError(f"failure injected by {INJECT_FAIL}={os.environ[INJECT_FAIL]}")
        v.run = build_run(job.method, thaw(job.params), job.compression_ratio)  # the press builders get plain values
        v.attention = v.run.attention or job.attn_implementation
    except Exception as e:  # noqa: BLE001 -- recorded as this variant's failure
        v.fail(e)
    return v


def prefill_classes(variants: list[Variant]) -> list[list[Variant]]:
    """Variants that can share one prefill of each sample, in order of first appearance; a variant that is not
    prefill-invariant is a class of its own."""
    classes: dict = {}
    for i, v in enumerate(variants):
        key = (v.attention, v.run.query_aware) if v.run.shares_prefill else ("alone", i)
        classes.setdefault(key, []).append(v)
    return list(classes.values())


def free_memory(dev) -> None:
    import gc

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def prefix_ids(sample, query_aware: bool | str) -> list[int]:
    """The tokens a variant prefills: the context, and the question after it when the press sees the question
    (`query_aware: prompt`: all of the prompt but its last token, which is fed after compression)."""
    if query_aware == "prompt":
        return sample.context_ids + sample.question_ids[:-1]
    return sample.context_ids + (sample.question_ids if query_aware else [])


def asked_ids(sample, query_aware: bool | str) -> list[int]:
    """The tokens fed after compression: the question (asked again when `query_aware: true`), or the prompt's last
    token (`query_aware: prompt`: the press saw the whole prompt once, as SnapKV's own implementation does)."""
    return sample.question_ids[-1:] if query_aware == "prompt" else sample.question_ids


class GroupRun:
    """Runs `one(run, prefill, sample, clock) -> row` for every variant and sample (the runner's per-sample work)."""

    def __init__(self, model, samples, one, clock, mem, dev):
        self.model, self.samples, self.one, self.clock, self.mem, self.dev = model, samples, one, clock, mem, dev

    def run(self, variants: list[Variant]) -> None:
        live = [v for v in variants if v.status == "ok"]
        for cls in prefill_classes(live) if live else []:
            use_attention(self.model, cls[0].attention)
            if len(cls) > 1:
                self.shared(cls)
            for v in cls:
                if v.retry or len(cls) == 1:  # on its own, over every sample (peak and time: of the rows it keeps)
                    v.retry, v.rows, v.peak, v.seconds = False, [], None, 0.0
                    self.alone(v)

    def shared(self, cls: list[Variant]) -> None:
        reads = union([v.run.prefill_reads() for v in cls])
        for sample in self.samples:
            if not any(v.live for v in cls):
                return
            ids = prefix_ids(sample, cls[0].run.query_aware)
            self.mem.reset()
            try:
                prefill = SharedPrefill(self.model, ids, reads, self.clock, sum(v.live for v in cls))
            except torch.OutOfMemoryError:  # each variant prefills this sample on its own
                free_memory(self.dev)
                prefill = None
            base = self.mem.peak()
            for v in [v for v in cls if v.live]:
                self.stage(v, sample, prefill, base)
            del prefill
            if self.dev.type == "cuda":
                torch.cuda.empty_cache()

    def alone(self, v: Variant) -> None:
        for sample in self.samples:
            if v.status != "ok":
                return
            self.mem.reset()
            self.stage(v, sample, None, None)

    def stage(self, v: Variant, sample, prefill, base_peak: int | None) -> None:
        """One variant on one sample: its cache (from `prefill`, or its own), question, answer, scoring."""
        own = prefill is None
        if not own:
            self.mem.reset()
        t0 = time.perf_counter()
        try:
            if injected(v.job, INJECT_OOM) and not v.rows:
                raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {INJECT_OOM}={os.environ[INJECT_OOM]})")
            p = OwnPrefill(self.model, prefix_ids(sample, v.run.query_aware), self.clock) if own else prefill
            v.rows.append(self.one(v.run, p, sample, self.clock))
        except torch.OutOfMemoryError as e:
            if own:
                v.out_of_memory(e, self.dev)
            else:  # beside the shared prefill's uncompressed cache: try again alone before calling it an OOM
                v.retry, v.rows = True, []
                free_memory(self.dev)
            return
        except Exception as e:  # noqa: BLE001 -- this variant's failure; the others go on
            v.fail(e)
            return
        v.seconds += time.perf_counter() - t0
        peaks = [p for p in (v.peak, base_peak, self.mem.peak()) if p is not None]
        v.peak = max(peaks) if peaks else None


def use_attention(model, attention: str) -> None:
    """Switch the loaded model's attention implementation (a press that needs eager attention, in a group whose
    other variants run the model's own)."""
    if model.config._attn_implementation != attention:
        prepare(attention)
        model.set_attn_implementation(attention)
