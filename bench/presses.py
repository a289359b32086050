"""Every press on CPU with the built-in tiny model: time and KV bytes relative to `no_press` in the same run.

    python bench/presses.py [--lengths 1024 4096] [--ratio 0.5] [--n 5] [--decode 32] [--threads 1] [--only LABEL...]

Per press variant and context length: median prefill seconds and median decode seconds per token (greedy, `--decode`
tokens after the question, no stop token) over `--n` kv_retrieval samples, after one untimed warm-up sample (which
also pays one-time costs such as DuoAttention's on-the-fly head patterns); KV bytes after prefill and after
decoding, read from the cache tensors. Ratios ("x") are medians of per-sample ratios to `no_press` (SDPA) run on
the same sample right before the variant, so load from other processes hits both alike.
`observed_attention` and H2O (`decoding` with observed_attention) need eager attention; `no_press (eager)` shows what
eager attention alone costs. Masking presses (AdaKV, DuoAttention) also show the fraction of entries attended.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from kvstudy.engine.stops import Stops
from kvstudy.evaluate import run_sample
from kvstudy.measure import Clock
from kvstudy.models import load_model
from kvstudy.presses.variant import attention_for, build_run
from kvstudy.tasks import get_task

# (label, method, params, takes the ratio)
VARIANTS = [
    ("no_press", "no_press", {}, False),
    ("no_press (eager)", "no_press", {}, False),
    ("knorm", "knorm", {}, True),
    ("streaming_llm", "streaming_llm", {}, True),
    ("snapkv", "snapkv", {}, True),
    ("snapkv -qa", "snapkv", {"query_aware": True}, True),
    ("tova", "tova", {}, True),
    ("expected_attention", "expected_attention", {}, True),
    ("random", "random", {}, True),
    ("pyramidkv", "pyramidkv", {}, True),
    ("keydiff", "keydiff", {}, True),
    ("observed_attention (H2O, eager)", "observed_attention", {}, True),
    ("cab", "cab", {}, True),
    ("adakv(snapkv) [masks]", "adakv", {}, True),
    ("duo_attention [masks]", "duo_attention", {}, True),
    ("decoding(knorm)", "decoding", {"press": "knorm"}, True),
    ("decoding(observed_attention) = H2O, eager", "decoding", {}, True),
    ("decoding(cab)", "decoding", {"press": "cab"}, True),
    ("decoding_budget(knorm, 256 tokens)", "decoding_budget", {"press": "knorm"}, False),
    ("int8", "int8", {}, False),
    ("int4", "int4", {}, False),
    ("knorm +int4", "knorm", {"quantization": "int4"}, True),
]


def measure(model, tok, run, samples, n_decode, base_model):
    """Medians over samples of the variant's measures and of their ratios to `no_press` on the same sample, run
    right before it (paired, so load from other processes on a shared machine hits both alike)."""
    clock = Clock(torch.device("cpu"))
    base_run = build_run("no_press", {}, None)
    run_sample(model, tok, run, samples[0], n_decode, Stops(), clock)  # warm-up, untimed
    run_sample(base_model, tok, base_run, samples[0], n_decode, Stops(), clock)
    rows = []
    for s in samples[1:]:
        b = run_sample(base_model, tok, base_run, s, n_decode, Stops(), clock)
        r = run_sample(model, tok, run, s, n_decode, Stops(), clock)
        per_token = lambda x: x["decode_seconds"] / max(x["decode_tokens"], 1)  # noqa: E731
        rows.append({
            "prefill": r["prefill_seconds"], "prefill_x": r["prefill_seconds"] / b["prefill_seconds"],
            "decode": per_token(r), "decode_x": per_token(r) / per_token(b),
            "bytes_x": r["kv_bytes"] / b["kv_bytes"], "bytes_final_x": r["kv_bytes_final"] / b["kv_bytes_final"],
            "attended": r["kv_tokens_attended"] / r["prefill_tokens"],
        })
    return {k: statistics.median(row[k] for row in rows) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--n", type=int, default=5, help="timed samples per variant (plus one warm-up)")
    ap.add_argument("--decode", type=int, default=32, help="tokens decoded after the question")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="builtin:tiny-retrieval")
    ap.add_argument("--only", nargs="*", help="run only the variants whose label contains one of these")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models = {}

    def model_for(attn):
        if attn not in models:
            models[attn] = load_model(a.model, "float32", attn, "cpu")
        return models[attn]

    print(f"tiny model, CPU, {a.threads} thread(s), ratio {a.ratio}, median of {a.n} samples, "
          f"{a.decode} decoded tokens")
    print("| press | length | prefill s | prefill x | decode ms/token | decode x | KV bytes x (prefill) "
          "| KV bytes x (after decode) | attended |")
    print("|---|---|---|---|---|---|---|---|---|")
    for length in a.lengths:
        for label, method, params, takes_ratio in VARIANTS:
            if a.only and not any(o in label for o in a.only):
                continue
            attn = "eager" if label.endswith("(eager)") else (attention_for(method, params) or "sdpa")
            model, tok = model_for(attn)
            samples = get_task("kv_retrieval", {"n_samples": a.n + 1, "n_pairs": 32}).samples(tok, length, seed=7)
            run = build_run(method, params, a.ratio if takes_ratio else None)
            m = measure(model, tok, run, samples, a.decode, model_for("sdpa")[0])
            print(f"| {label} | {length} | {m['prefill']:.3f} | {m['prefill_x']:.2f} | {1000 * m['decode']:.2f} "
                  f"| {m['decode_x']:.2f} | {m['bytes_x']:.3f} | {m['bytes_final_x']:.3f} | {m['attended']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
