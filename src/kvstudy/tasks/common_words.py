"""RULER common words extraction (`cwe`): a numbered word list where `num_common` words appear `freq_common`
times and the rest `freq_uncommon` times; name the most common ones. Words come from the shipped list
(`tasks/data/words.txt`, ~1,250 nouns, verbs and adjectives, or `word_list`; the lexicon's fillers for the tiny
model).

Exact length: the largest number of uncommon occurrences whose list fits is found by bisection over cached piece
lengths; the few tokens left (less than one list item) are padding before the list, recorded in `meta`.
When the word list is too small for the length at `freq_uncommon`, uncommon words repeat more often, always
strictly less than `freq_common` (RULER's own generator raises the same way with its larger list), else an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task, TaskParamError
from kvstudy.tasks.haystack import PieceTokenizer
from kvstudy.tasks.vocab import VOCABS, resolve_vocab


def _largest_fit(cost, budget: int) -> int:
    """The largest k with cost(k) <= budget, cost growing with k and cost(0) within budget: doubling, then bisection."""
    lo, hi = 0, 1
    while cost(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return lo


@register
@dataclass
class CommonWords(Task):
    name = "cwe"
    metric = "string_match_all"
    description = "RULER common words extraction: the num_common most frequent words of a long list"
    param_choices = {"vocab": VOCABS}
    param_ranges = {"num_common": (1, 1000), "freq_common": (2, 10_000), "freq_uncommon": (1, 10_000)}

    max_new_tokens: int = 120
    vocab: str = "auto"
    num_common: int = 10
    freq_common: int = 30
    freq_uncommon: int = 3
    word_list: str = ""  # a file of words (whitespace-separated) instead of the shipped list, for long lengths

    def __post_init__(self):
        super().__post_init__()
        if self.freq_uncommon >= self.freq_common:
            raise TaskParamError("freq_uncommon", f"{self.freq_uncommon} is not below freq_common {self.freq_common} "
                                 "(the common words would not be the most common)")

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        eng = v.name == "english"
        head = enc("Below is a numbered list of words. In these words, some appear more often than others."
                   " Memorize the ones that appear most often.") if eng else []
        q = (f" Question: What are the {self.num_common} most common words in the above list?"
             f" Answer: The top {self.num_common} words that appear most often in the list are:") if eng else " ?"
        budget = length - len(enc.bos) - len(head)
        pool = list(dict.fromkeys(Path(self.word_list).read_text().split())) if self.word_list else list(v.words)
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 23])
            words = [str(w) for w in rng.permutation(pool)]
            common, rare = words[: self.num_common], words[self.num_common :]
            if not rare:
                raise ValueError(f"the word list has {len(words)} words, more than num_common needed")
            base = [w for w in common for _ in range(self.freq_common)]

            def items(k: int, rng_seed=(seed, length, i, 24)) -> list[str]:
                seq = base + [rare[(j // self.freq_uncommon) % len(rare)] for j in range(k)]
                order = np.random.default_rng(list(rng_seed) + [k]).permutation(len(seq))
                return [seq[j] for j in order]

            def cost(ws: list[str]) -> int:
                if eng:
                    return sum(len(enc(f" {n + 1}.")) + len(enc(f" {w}")) for n, w in enumerate(ws))
                return sum(len(enc(f" {w}")) for w in ws)

            if cost(items(0)) > budget:
                raise ValueError(f"length {length} is too short: the {self.num_common} common words x freq_common "
                                 f"{self.freq_common} alone take {cost(items(0))} tokens of the {budget} this tokenizer "
                                 "leaves for the list (use a longer length, or lower num_common / freq_common)")
            ws = items(_largest_fit(lambda k: cost(items(k)), budget))
            max_rare = max(Counter(w for w in ws if w not in common).values(), default=0)
            if max_rare >= self.freq_common:
                raise ValueError(f"length {length} needs uncommon words {max_rare} times with {len(rare)} words;"
                                 f" not fewer than freq_common {self.freq_common}: use a shorter length")
            body: list[int] = []
            for n, w in enumerate(ws):
                body += (enc(f" {n + 1}.") if eng else []) + enc(f" {w}")
            pad = (enc(v.pad) if eng else enc(" " + v.pad)) or enc(".")
            n_pad = budget - len(body)
            pad_ids = (pad * (n_pad // len(pad) + 1))[:n_pad]
            ctx = enc.bos + head + pad_ids + body
            assert len(ctx) == length
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=enc.question(q),
                    references=common,
                    meta={"pad_tokens": n_pad, "n_items": len(ws), "uncommon_max_freq": max_rare, "vocab": v.name},
                )
            )
        return out
