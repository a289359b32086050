"""How reproducible are the timing protocol's numbers on this machine? (issue 15, "Measure")

One run, the shipped tiny model on CPU: the timing protocol (kvstudy.timing.measure_group: warm-up round, then R
interleaved runs of prefill + D decode tokens, end of sequence ignored) measures no_press and three prefill-time
presses three times over. Prints, per measurement, each variant's median TTFT and decode tokens/s with their
intervals, then
- the spread of no_press's medians across the three measurements: (max - min) / min, goal <= 10%;
- every measurement where a prefill-time press is faster than no_press beyond the intervals (TTFT), goal none.

    .venv/bin/python bench/efficiency_noise.py [--length 1024] [--repeats 5] [--decode-tokens 128] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from kvstudy.evaluate import pick_device
from kvstudy.intervals import compare
from kvstudy.models import load_model
from kvstudy.timing import _finish, measure_group

VARIANTS = [
    {"press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0},
    {"press": "knorm-cr0.50", "method": "knorm", "params": {}, "compression_ratio": 0.5},
    {"press": "snapkv-cr0.50", "method": "snapkv", "params": {}, "compression_ratio": 0.5},
    {"press": "streaming_llm-cr0.50", "method": "streaming_llm", "params": {}, "compression_ratio": 0.5},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = pick_device("cpu")
    model, _ = load_model("builtin:tiny-retrieval", "float32", "sdpa", "cpu")
    job = {"length": a.length, "seed": 0, "repeats": a.repeats, "decode_tokens": a.decode_tokens}
    print(f"tiny model, {a.length} tokens, {a.repeats} runs + 1 warm-up round, {a.decode_tokens} decode tokens, "
          f"{a.threads} thread(s)\n")
    print(f"{'meas':>4}  {'variant':<22} {'TTFT ms median [interval]':>28} {'decode tok/s median [interval]':>32}")
    summaries = []
    for m in range(1, 4):
        rec = {p: _finish(e, a.length) for p, e in measure_group(model, VARIANTS, job, dev).items()}
        summaries.append(rec)
        for v in VARIANTS:
            s = rec[v["press"]]["summary"]
            t, d = s["ttft_seconds"], s["decode_tokens_per_second"]
            print(f"{m:>4}  {v['press']:<22} {t['median'] * 1e3:>8.2f} [{t['low'] * 1e3:6.2f}, {t['high'] * 1e3:6.2f}]"
                  f"      {d['median']:>8.1f} [{d['low']:7.1f}, {d['high']:7.1f}]")
    print(f"\ninterval coverage at {a.repeats} runs: {summaries[0]['no_press']['summary']['ttft_seconds']['coverage']:.4f}")
    for measure, label in (("ttft_seconds", "TTFT"), ("decode_tokens_per_second", "decode tok/s")):
        for v in VARIANTS:
            med = [s[v["press"]]["summary"][measure]["median"] for s in summaries]
            spread = (max(med) - min(med)) / min(med)
            print(f"spread of {v['press']}'s {label} medians across the 3 measurements: {spread:6.1%}"
                  f"  ({'met' if spread <= 0.10 else 'NOT met'}: <= 10%)")
    faster = [(m + 1, v["press"]) for m, s in enumerate(summaries) for v in VARIANTS[1:]
              if compare(s[v["press"]]["summary"]["ttft_seconds"]["low"], s[v["press"]]["summary"]["ttft_seconds"]["high"],
                         s["no_press"]["summary"]["ttft_seconds"]["low"],
                         s["no_press"]["summary"]["ttft_seconds"]["high"]) < 0]
    print(f"prefill-time presses faster than no_press beyond the intervals (TTFT): {faster or 'none'}")


if __name__ == "__main__":
    main()
