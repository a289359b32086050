"""RULER frequent words extraction (`fwe`): a "coded text" of random words drawn from a Zipf distribution;
name the three most frequent words (the most frequent of all is the ignored filler `....`, as in RULER).

The answer is read off the realised counts (top three after the dots, strictly more frequent than the fourth;
a draw with a tie is redrawn), so the references are right whatever the sample. Padding to the exact length uses
the dots' own token, which only adds to the ignored word.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from string import ascii_lowercase

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task, TaskParamError
from kvstudy.tasks.haystack import PieceTokenizer
from kvstudy.tasks.vocab import VOCABS, resolve_vocab


@register
@dataclass
class FreqWords(Task):
    name = "fwe"
    metric = "string_match_all"
    description = "RULER frequent words extraction: the 3 most frequent words of a Zipf-distributed coded text"
    param_choices = {"vocab": VOCABS}
    param_ranges = {"alpha": (1.0, 10.0), "vocab_size": (2, 100_000), "top_k": (1, 100)}

    max_new_tokens: int = 50
    vocab: str = "auto"
    alpha: float = 2.0
    vocab_size: int = 200
    top_k: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.alpha <= 1:
            raise TaskParamError("alpha", f"{self.alpha!r} must be above 1 (a Zipf distribution's exponent)")
        if self.top_k >= self.vocab_size:
            raise TaskParamError("top_k", f"{self.top_k} is not below vocab_size {self.vocab_size}")

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        eng = v.name == "english"
        dots = "...." if eng else "."
        head = enc("Read the following coded text and track the frequency of each coded word. Find the three most"
                   " frequently appeared coded words. Coded text:") if eng else []
        q = (" Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most"
             " frequently appeared words in the above coded text? Answer: According to the coded text above, the"
             " three most frequently appeared words are:") if eng else " ?"
        budget = length - len(enc.bos) - len(head)
        out = []
        for i in range(self.n_samples):
            for attempt in range(100):
                rng = np.random.default_rng([seed, length, i, 25, attempt])
                if eng:
                    codes: dict[str, None] = {}
                    while len(codes) < self.vocab_size:
                        codes["".join(rng.choice(list(ascii_lowercase), size=int(rng.integers(3, 9))))] = None
                    words = [dots] + list(codes)
                else:
                    words = [dots] + [str(w) for w in rng.choice(v.words, size=min(self.vocab_size, len(v.words)),
                                                                  replace=False)]
                ids: list[int] = []
                drawn: list[str] = []
                while True:
                    r = int(rng.zipf(self.alpha)) - 1
                    w = words[r] if r < len(words) else dots
                    piece = enc(" " + w)
                    if len(ids) + len(piece) > budget:
                        break
                    ids += piece
                    drawn.append(w)
                counts = Counter(w for w in drawn if w != dots).most_common(self.top_k + 1)
                if len(counts) > self.top_k and counts[self.top_k - 1][1] > counts[self.top_k][1]:
                    break
            else:
                raise ValueError(f"no draw with a strict top {self.top_k} at length {length}")
            pad = enc(" " + dots)[-1:]
            ids += pad * (budget - len(ids))
            ctx = enc.bos + head + ids
            assert len(ctx) == length
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=enc.question(q),
                    references=[w for w, _ in counts[: self.top_k]],
                    meta={"counts": dict(counts), "vocab": v.name},
                )
            )
        return out
