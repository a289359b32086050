"""What every raw result shares, whatever the task kind: the job's identity and its efficiency measures.

Timing under sharing (docs/data-contracts.md, "Timing in a group job"): a variant's `prefill_seconds` is the prefill
its cache came from, its own (the press acting inside it) or the one it shared with `prefill_shared_by` variants,
attributed whole to each of them; `compress_seconds` is deriving its cache from the shared prefill (null for its
own prefill, whose compression is inside `prefill_seconds`); `ttft_seconds` is prefill + compression + question to
the first answer token; decoding is its own. `total_seconds` is the job's wall time, the group's when it ran several
variants (`group_variants`), and `variant_seconds` the time spent on this variant alone.
"""

from __future__ import annotations

from kvstudy.measure import full_cache_bytes, full_cache_tokens

SCHEMA_VERSION = 1
JOB_KEYS = ("model", "model_path", "task", "task_params", "length", "press", "method", "params",
            "compression_ratio", "seed")


def job_block(job) -> dict:
    """A raw result's `job` block: the job's (a kvstudy.job.Job) JOB_KEYS, plain values; None where unset, as
    `as_dict` leaves such keys out (a hand-written no_press job's compression_ratio)."""
    d = job.as_dict()
    return {k: d.get(k) for k in JOB_KEYS}


def mean(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def efficiency(v, model, full_tokens: int, peak_kind: str, total_seconds: float, group_size: int) -> dict:
    """The result's `efficiency` of variant `v` (kvstudy.engine.group.Variant): means over its rows, against the
    model's own uncompressed cache of `full_tokens` prefilled tokens."""
    rows = v.rows
    decode_s = sum(r["decode_seconds"] for r in rows)
    full = full_cache_tokens(model, full_tokens)  # sliding-window layers hold only their window
    shared_by = mean(rows, "prefill_shared_by")
    return {
        "kv_tokens_kept": mean(rows, "kv_tokens"),
        "kv_tokens_full": full,
        "kv_fraction_kept": mean(rows, "kv_tokens") / full if rows else None,
        # masking presses (AdaKV, DuoAttention): fraction of entries attention still sees; bytes stay full
        "kv_fraction_attended": mean(rows, "kv_tokens_attended") / full if rows else None,
        "kv_bytes": mean(rows, "kv_bytes"),
        "kv_bytes_full": full_cache_bytes(model, full_tokens),
        "kv_tokens_final": mean(rows, "kv_tokens_final"),
        "kv_bytes_final": mean(rows, "kv_bytes_final"),
        "attn_implementation": v.attention,
        "peak_memory_bytes": v.peak if rows else None,
        "peak_memory_kind": peak_kind,
        "prefill_seconds": mean(rows, "prefill_seconds"),
        "prefill_shared_by": round(shared_by, 3) if shared_by is not None else None,
        "compress_seconds": mean(rows, "compress_seconds"),
        "ttft_seconds": mean(rows, "ttft_seconds"),
        "decode_tokens_per_second": sum(r["decode_tokens"] for r in rows) / decode_s if decode_s > 0 else None,
        "total_seconds": total_seconds,
        "variant_seconds": v.seconds,
        "group_variants": group_size,
    }


def timing(times: dict, t_ready: float, t_first: float, t_end: float) -> dict:
    """A sample row's timing: `times` from the prefill (`cache_for`), the clock when the cache was ready, when the
    first answer token (or logits) was known, and at the end."""
    prefill = times["prefill_seconds"] + (times["compress_seconds"] or 0.0)
    return {**times, "ttft_seconds": prefill + (t_first - t_ready), "decode_seconds": t_end - t_first}
