"""Perplexity under compression on the built-in tiny model and the shipped text in its words, by press and ratio,
with fidelity to the uncompressed model (KL per token, top-1 agreement).

    python bench/perplexity_tiny.py [--ratios 0 0.25 0.5 0.75 0.9] [--n 6]

The text (tests/data/tiny_text.txt) is blocks of filler with value/key pairs, then queries `? key value`: values in
the continuation are predictable only from the context, so evicting pairs raises perplexity.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kvstudy.evaluate import run_job
from kvstudy.presses import PRESSES

TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_text.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = {"source": str(TEXT), "n_samples": a.n, "continuation_tokens": 64, "chunk_size": 32}
    print("| press | ratio | perplexity | KL (nats/token) | top-1 agreement | KV tokens kept |")
    print("|---|---|---|---|---|---|")
    for method, spec in PRESSES.items():
        for ratio in ([0.0] if not spec.has_ratio else a.ratios):
            job = {"model": "tiny", "model_path": "builtin:tiny-retrieval", "dtype": "float32",
                   "task": "ppl", "task_kind": "perplexity", "task_params": params, "length": 256, "seed": 0,
                   "press": method, "method": method, "params": {}, "compression_ratio": ratio}
            r = run_job(job, threads=a.threads, device="cpu")
            f = r["fidelity"]
            print(f"| {method} | {ratio:g} | {r['quality']['score']:.1f} | {f['kl']:.3f} | {f['top1_agreement']:.3f}"
                  f" | {r['efficiency']['kv_tokens_kept']:.0f} |")


if __name__ == "__main__":
    main()
