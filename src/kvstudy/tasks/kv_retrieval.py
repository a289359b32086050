"""Multi-key key->value retrieval (HELMET json_kv / RULER niah-multikey style), built at token level.

The context holds `n_pairs` key/value needles at random depths; the question asks for one key's value. The
number of pairs is the difficulty knob: a press must keep the one queried pair among many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task
from kvstudy.tasks.haystack import LEXICON, PieceTokenizer, build_context
from kvstudy.tasks.niah import check_needle_templates


def kv_context(rng, enc: PieceTokenizer, length: int, n_pairs: int, needle_template: str):
    """Context with `n_pairs` distinct key/value needles at uniform random depths. Shared with `train-tiny`."""
    keys = rng.choice(LEXICON.keys, size=n_pairs, replace=False)
    values = rng.choice(LEXICON.values, size=n_pairs, replace=True)
    needles = [enc(" " + needle_template.format(key=k, value=v)) for k, v in zip(keys, values)]
    depths = sorted(rng.uniform(0, 1, size=n_pairs))
    ctx = build_context(rng, enc, length, needles, list(depths))
    return ctx, list(zip(keys, values)), depths


@register
@dataclass
class KVRetrieval(Task):
    name = "kv_retrieval"
    metric = "string_match_all"
    description = "n_pairs key/value needles in a haystack; answer one key's value"
    depths = True
    param_ranges = {"n_pairs": (1, len(LEXICON.keys))}  # distinct keys of the lexicon

    n_pairs: int = 32
    needle_template: str = "{value} {key}"
    question_template: str = " ? {key}"

    def __post_init__(self):
        super().__post_init__()
        check_needle_templates(self)

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 1])
            ctx, pairs, depths = kv_context(rng, enc, length, self.n_pairs, self.needle_template)
            q = int(rng.integers(len(pairs)))
            key, value = pairs[q]
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx.ids,
                    question_ids=enc.question(self.question_template.format(key=key)),
                    references=[str(value)],
                    depth=float(ctx.needle_offsets[q] / length),
                    meta={"needle_offset": ctx.needle_offsets[q], "n_pairs": self.n_pairs},
                )
            )
        return out
