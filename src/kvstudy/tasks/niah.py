"""Needle in a haystack (RULER niah_single): one key/value needle at a controlled depth.

Depths are spread evenly over [0, 1] across the samples so the depth x length heatmap has every cell filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks import register
from kvstudy.tasks.base import Sample, Task, TaskParamError, check_template
from kvstudy.tasks.haystack import LEXICON, PieceTokenizer, build_context


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
    description = "one key/value needle at an evenly spread depth in a filler haystack"
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
            depth = (i % self.n_depths) / max(self.n_depths - 1, 1)
            key = str(rng.choice(LEXICON.keys))
            value = str(rng.choice(LEXICON.values))
            needle = enc(" " + self.needle_template.format(key=key, value=value))
            ctx = build_context(rng, enc, length, [needle], [depth])
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx.ids,
                    question_ids=enc.question(self.question_template.format(key=key)),
                    references=[value],
                    depth=float(depth),
                    meta={"needle_offset": ctx.needle_offsets[0]},
                )
            )
        return out
