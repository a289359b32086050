"""Writes tiny_text.txt: a text in the built-in tiny model's vocabulary for the perplexity tests.

Blocks of 319 words: 255 words of filler with 24 "value key" pairs, then 16 queries "? key value" about pairs of
the same block (64 words). With length 256 (BOS + 255) and continuation_tokens 64 each window is one block, so the
continuation's values are predictable only from the context: evicting the pairs must raise perplexity.
Run: python tests/data/make_tiny_text.py  (deterministic)
"""

from pathlib import Path

import numpy as np

from kvstudy.tasks.haystack import LEXICON

rng = np.random.default_rng(0)
blocks = []
for _ in range(6):
    keys = rng.choice(LEXICON.keys, size=24, replace=False)
    values = rng.choice(LEXICON.values, size=24)
    ctx = list(rng.choice(LEXICON.filler, size=255 - 48))
    for pos, k, v in sorted(zip(rng.choice(len(ctx), size=24, replace=False), keys, values), reverse=True):
        ctx[pos:pos] = [str(v), str(k)]
    queries = []
    for j in rng.choice(24, size=16, replace=False):
        queries += ["?", str(keys[j]), str(values[j]), "."]
    blocks.append(" ".join(ctx + queries))
Path(__file__).with_name("tiny_text.txt").write_text("\n".join(blocks) + "\n")
