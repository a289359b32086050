"""Needle in a haystack (RULER niah_single): one key/value needle at a controlled depth.

Sample i sits in depth bin i mod n_depths, an equal share [k/n, (k+1)/n) of the haystack (so the depth x length
heatmap has every cell filled), at a depth drawn uniformly inside that bin; key, value, haystack and depth are
drawn from (seed, length, i). Samples of one bin are then independent replicates: none shares a context or a needle
offset, so a press that chooses by position (streaming_llm) does not fail or pass all of a bin's samples as one.
`depth` is the drawn depth (the needle's start as a fraction of the haystack), `meta.depth_bin` its bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task, TaskParamError, check_template
from kvstudy.tasks.haystack import LEXICON, PieceTokenizer, binned_depth, build_context


def check_needle_templates(task) -> None:
    """The needle names its key and value, the question its key; nothing else is filled in."""
    check_template("needle_template", task.needle_template, {"key", "value"})
    check_template("question_template", task.question_template, {"key"})
    for key, text, needs in (("needle_template", task.needle_template, ("{key}", "{value}")),
                             ("question_template", task.question_template, ("{key}",))):
        for n in needs:
            if n not in text:
                raise TaskParamError(key, f"{text!r} has no {n}")


@register
@dataclass
class NIAH(Task):
    name = "niah"
    metric = "string_match_all"
    description = "one key/value needle at a depth drawn inside one of n_depths equal bins, in a filler haystack"
    depths = True
    param_ranges = {"n_depths": (1, 1000)}

    n_depths: int = 10
    needle_template: str = "{value} {key}"
    question_template: str = " ? {key}"

    def __post_init__(self):
        super().__post_init__()
        check_needle_templates(self)

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 2])
            key = str(rng.choice(LEXICON.keys))
            value = str(rng.choice(LEXICON.values))
            depth_bin = i % self.n_depths
            depth = binned_depth(depth_bin, self.n_depths, rng.uniform())
            needle = enc(" " + self.needle_template.format(key=key, value=value))
            ctx = build_context(rng, enc, length, [needle], [depth])
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx.ids,
                    question_ids=enc.question(self.question_template.format(key=key)),
                    references=[value],
                    depth=float(depth),
                    meta={"needle_offset": ctx.needle_offsets[0], "depth_bin": depth_bin},
                )
            )
        return out
