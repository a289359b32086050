"""Batched decoding of press variants whose caches have the same shape: faster, and does it agree?

    python bench/batched_decode.py [--lengths 1024 2048] [--new-tokens 32] [--samples 3] [--arch tiny | llama]

Variants at one ratio whose presses keep the same number of entries in every layer and head (knorm, streaming_llm,
snapkv, tova, expected_attention, random, keydiff, cab at 0.5) get their caches from one shared prefill
(kvstudy.engine), then decode greedily --new-tokens tokens (stop tokens ignored) two ways: one variant after another
(what the engine does), and all of them as one batch (their caches stacked along the batch dimension, one forward per
step for all). Prints the decoding time of both, the speedup, whether every variant generated the same tokens, and
the largest absolute difference of the answer's first logits. `--arch llama` uses a random-weight 8-layer Llama
(hidden 1024) instead of the shipped tiny model, where a decoding step is compute rather than overhead.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from kvstudy.engine.generate import ask
from kvstudy.engine.prefill import SharedPrefill, union
from kvstudy.measure import Clock
from kvstudy.presses.cache import _DynamicCache
from kvstudy.presses.variant import build_run

METHODS = ("knorm", "streaming_llm", "snapkv", "tova", "expected_attention", "random", "keydiff", "cab")


def stacked(caches):
    """One cache holding `caches` as rows of a batch (every layer of the same shape in each)."""
    layers = []
    for parts in zip(*(c.layers for c in caches)):
        layer = copy.copy(parts[0])
        layer.keys = torch.cat([p.keys for p in parts], 0)
        layer.values = torch.cat([p.values for p in parts], 0)
        layers.append(layer)
    return _DynamicCache(layers)


@torch.no_grad()
def decode(model, cache, n_prefix: int, question: list[int], new_tokens: int, batch: int):
    """Greedy tokens (batch x new_tokens) and the first step's logits, every row fed every step."""
    dev = model.device
    q = torch.tensor([question] * batch, device=dev)
    pos = torch.arange(n_prefix, n_prefix + q.shape[1], device=dev).unsqueeze(0).expand(batch, -1)
    out = ask(model, q, cache, pos)
    first = out.logits[:, -1].float()
    tokens = [first.argmax(-1)]
    pos = pos[:, -1:] + 1
    for _ in range(new_tokens - 1):
        out = model(input_ids=tokens[-1][:, None], past_key_values=cache, position_ids=pos)
        tokens.append(out.logits[:, -1].argmax(-1))
        pos = pos + 1
    return torch.stack(tokens, 1), first


def model_for(arch: str):
    from kvstudy.models import load_model

    if arch == "tiny":
        return load_model("builtin:tiny-retrieval", "float32", "sdpa", "cpu")[0]
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=8192)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--arch", choices=["tiny", "llama"], default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = model_for(a.arch)
    clock = Clock(model.device)
    runs = [build_run(m, {"window_size": 16} if m == "snapkv" else {}, 0.5) for m in METHODS]
    vocab = model.config.vocab_size
    print(f"{a.arch}, {len(runs)} variants at ratio 0.5, {a.new_tokens} tokens each, {a.samples} samples\n")
    print("| context | one after another | batched | speedup | same tokens | max abs diff of first logits |")
    print("|---|---|---|---|---|---|")
    for length in a.lengths:
        seq = sepb = 0.0
        same, diff = True, 0.0
        for i in range(a.samples):
            torch.manual_seed(i)
            ctx, question = torch.randint(10, vocab, (length,)).tolist(), torch.randint(10, vocab, (4,)).tolist()
            shared = SharedPrefill(model, ctx, union([r.prefill_reads() for r in runs]), clock, len(runs))
            caches = [shared.cache_for(r)[0] for r in runs]
            t0 = time.perf_counter()
            alone = [decode(model, c, length, question, a.new_tokens, 1) for c in caches]
            t1 = time.perf_counter()
            tokens, first = decode(model, stacked([shared.cache_for(r)[0] for r in runs]), length, question,
                                   a.new_tokens, len(runs))
            t2 = time.perf_counter()
            seq, sepb = seq + t1 - t0, sepb + t2 - t1
            same &= all(torch.equal(tokens[k], alone[k][0][0]) for k in range(len(runs)))
            diff = max(diff, max(float((first[k] - alone[k][1][0]).abs().max()) for k in range(len(runs))))
        print(f"| {length} | {seq:.2f} s | {sepb:.2f} s | {seq / sepb:.1f}x | {'yes' if same else 'NO'} | {diff:.1e} |")


if __name__ == "__main__":
    main()
