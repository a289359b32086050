"""HELMET's synthetic recall task `json_kv`: a JSON object of uuid keys to uuid values; give one key's value.

As many pairs as fit the length (HELMET sizes the object per length the same way); sample i queries a pair drawn
uniformly inside depth bin i mod n_depths of the pairs (n_depths equal bins), so samples of one bin differ in
their needle offset (`meta.depth_bin`). Whitespace between JSON tokens is still valid JSON, so the few tokens
short of the exact length are spaces before the closing brace. Scored with HELMET's `substring_exact_match`. The
lexicon rendering (tiny model) is the same recall task as `value key` pairs without JSON punctuation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task
from kvstudy.tasks.haystack import PieceTokenizer, binned_depth, build_context
from kvstudy.tasks.vocab import VOCABS, make_items, resolve_vocab


def _fill(rng, enc, v, budget: int) -> tuple[list[list[int]], list[tuple[str, str]]]:
    """The pairs (and their token pieces) that fit `budget` tokens: as many uuid pairs as fit (English), or the
    lexicon's keys each once with a random value, as far as they fit."""
    pieces: list[list[int]] = []
    pairs: list[tuple[str, str]] = []
    used = 0
    while True:
        if v.name == "english":
            k, val = make_items(rng, v, "uuids", 2)
            piece = enc((", " if pairs else "") + f"{json.dumps(k)}: {json.dumps(val)}")
        else:
            if len(pairs) == len(v.keys):
                break
            k = str(v.keys[len(pairs)])
            val = str(rng.choice(v.values))
            piece = enc(f" {val} {k}")
        if used + len(piece) > budget:
            break
        pieces.append(piece)
        pairs.append((k, val))
        used += len(piece)
    return pieces, pairs


@register
@dataclass
class JsonKV(Task):
    name = "json_kv"
    metric = "substring_exact_match"
    description = "HELMET json_kv: retrieve a uuid value by its key from a JSON object filling the context"
    param_choices = {"vocab": VOCABS}
    depths = True
    param_ranges = {"n_depths": (1, 1000)}

    max_new_tokens: int = 48
    # HELMET runs it without a chat template and stops at newline (configs: use_chat_template false,
    # stop_new_line true); a study may set chat_template: auto and its own stop_words
    chat_template: str = "none"
    stop_words: tuple | None = ("\n",)
    vocab: str = "auto"
    n_depths: int = 10

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        eng = v.name == "english"
        head = enc("Extract the value corresponding to the specified key in the JSON object below. JSON data: {") \
            if eng else []
        tail = enc("}") if eng else []
        budget = length - len(enc.bos) - len(head) - len(tail)
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 26])
            pieces, pairs = _fill(rng, enc, v, budget)
            used = sum(len(p) for p in pieces)
            if not pairs:
                raise ValueError(f"length {length} is too short for one JSON pair")
            depth_bin = i % self.n_depths
            q = min(int(binned_depth(depth_bin, self.n_depths, rng.uniform()) * len(pairs)), len(pairs) - 1)
            if eng:
                body = [t for p in pieces for t in p]
                pad = enc(" ") or enc("\n")
                if not pad:
                    raise ValueError("this tokenizer encodes neither a space nor a newline: cannot pad JSON")
                n_pad = budget - len(body)
                ctx = enc.bos + head + body + (pad * n_pad)[:n_pad] + tail
                offset = len(enc.bos) + len(head) + sum(len(p) for p in pieces[:q])
            else:  # the lexicon's 128 keys fill only part of a long context: pairs spread in a filler haystack
                perm = rng.permutation(len(pairs))
                pairs = [pairs[j] for j in perm]
                depths = sorted(rng.uniform(0, 1, size=len(pairs)))
                n_pad = budget - used
                built = build_context(rng, enc, length, [enc(f" {val} {k}") for k, val in pairs], depths,
                                      filler=v.words)
                ctx, offset = built.ids, built.needle_offsets[q]
            assert len(ctx) == length
            key, value = pairs[q]
            question = f" Key: {json.dumps(key)} Corresponding value:" if eng else f" ? {key}"
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=enc.question(question),
                    references=[value],
                    depth=offset / length,
                    meta={"needle_offset": offset, "n_pairs": len(pairs), "pad_tokens": n_pad, "vocab": v.name,
                          "depth_bin": depth_bin},
                )
            )
        return out
