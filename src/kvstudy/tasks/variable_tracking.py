"""RULER variable tracking (`vt`): chains of assignments hidden in a haystack; name every variable of one chain.

`VAR A = 12345.` then `VAR B = A.` ... (`num_hops` hops per chain, `num_chains` chains, statements of a chain in
order at random depths). The answer is every variable holding the queried value; scored with `string_match_all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task
from kvstudy.tasks.haystack import PieceTokenizer, build_context
from kvstudy.tasks.vocab import HAYSTACKS, VOCABS, haystack, make_items, resolve_vocab


def _var_names(rng, v, n: int) -> list[str]:
    if v.name != "english":
        return [str(x) for x in rng.choice(v.keys, size=n, replace=False)]
    out: dict[str, None] = {}
    while len(out) < n:
        out["".join(rng.choice(list(ascii_uppercase), size=5))] = None
    return list(out)


@register
@dataclass
class VariableTracking(Task):
    name = "vt"
    metric = "string_match_all"
    description = "RULER variable tracking: find every variable assigned a value through a chain"
    param_choices = {"vocab": VOCABS, "haystack": HAYSTACKS}
    depths = True
    param_ranges = {"num_chains": (1, 100), "num_hops": (1, 100)}

    max_new_tokens: int = 32
    vocab: str = "auto"
    haystack: str = "noise"
    num_chains: int = 1
    num_hops: int = 4

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        eng = v.name == "english"
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 22])
            names = _var_names(rng, v, self.num_chains * (self.num_hops + 1))
            values = make_items(rng, v, "numbers" if eng else "words", self.num_chains, "value")
            needles, depths = [], []
            for c in range(self.num_chains):
                chain = names[c * (self.num_hops + 1) : (c + 1) * (self.num_hops + 1)]
                srcs = [values[c]] + chain[:-1]
                d = sorted(rng.uniform(0, 1, size=len(chain)))
                for var, src, dep in zip(chain, srcs, d):
                    needles.append(enc(f" VAR {var} = {src}." if eng else f" {src} {var}"))
                    depths.append(dep)
            prefix = enc("Memorize and track the chain(s) of variable assignment hidden in the following text.") if eng else []
            ctx = build_context(rng, enc, length, needles, depths, hay=haystack(rng, enc, v, self.haystack),
                                prefix=prefix)
            answer = names[: self.num_hops + 1]
            if eng:
                q = (f" Question: Find all variables that are assigned the value {values[0]} in the text above."
                     f" Answer: According to the chain(s) of variable assignment in the text above,"
                     f" {self.num_hops + 1} variables are assigned the value {values[0]}, they are:")
            else:
                q = f" ? {values[0]}"
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx.ids,
                    question_ids=enc.question(q),
                    references=answer,
                    depth=ctx.needle_offsets[0] / length,
                    meta={"needle_offset": ctx.needle_offsets[0], "chain_offsets": ctx.needle_offsets[: len(answer)],
                          "value": values[0], "vocab": v.name},
                )
            )
        return out
