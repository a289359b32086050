"""RULER's needle-in-a-haystack family at exact token length: single, multikey, multivalue, multiquery.

One generator with RULER's knobs (`num_keys`, `num_values`, `num_queries`, key/value types words / numbers /
uuids, haystack noise / words / needle / essay). RULER's presets (its scripts/synthetic.yaml) are parameter
sets: niah_single_1 = {haystack: noise}, niah_single_2 = {haystack: essay}, niah_single_3 = {haystack: essay,
value_type: uuids}, niah_multikey_1 = {haystack: essay, num_keys: 4}, niah_multikey_2 = {haystack: needle},
niah_multikey_3 = {haystack: needle, key_type: uuids, value_type: uuids}, niah_multivalue = {haystack: essay,
num_values: 4}, niah_multiquery = {haystack: essay, num_keys: 4, num_queries: 4} (keys words and values numbers
unless said). The essay haystack is prose read from `essay_source` (kvstudy.tasks.essays), from its start, repeated
if short, cut at token level; needles go between its sentences. Scored with RULER's `string_match_all` over every queried value. The first queried needle sits at a depth drawn inside bin i mod n_depths of n_depths equal bins of the haystack
(`meta.target_depth`, `meta.depth_bin`; kvstudy.tasks.haystack.binned_depth), the others at random depths;
`depth` records its real offset / length, instructions included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task, TaskParamError
from kvstudy.tasks.essays import essay_sentences
from kvstudy.tasks.haystack import PieceTokenizer, binned_depth, build_context, pieces_ids, repeat_ids
from kvstudy.tasks.vocab import HAYSTACKS, ITEM_TYPES, VOCABS, haystack, make_items, resolve_vocab

TYPE_NAMES = {"words": "words", "numbers": "numbers", "uuids": "uuids"}


def join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@register
@dataclass
class RulerNIAH(Task):
    name = "ruler_niah"
    metric = "string_match_all"
    description = "RULER niah (single/multikey/multivalue/multiquery; noise, words or needle haystack)"
    param_choices = {"vocab": VOCABS, "haystack": HAYSTACKS + ("needle", "essay"), "key_type": ITEM_TYPES,
                     "value_type": ITEM_TYPES}
    depths = True
    param_ranges = {"num_keys": (1, 1000), "num_values": (1, 100), "num_queries": (1, 1000), "n_depths": (1, 1000)}

    max_new_tokens: int = 64
    vocab: str = "auto"  # english | lexicon | auto (see tasks/vocab.py)
    haystack: str = "noise"  # noise (repeated sentences) | words (random words) | needle (distractors) | essay
    essay_source: str = ""  # haystack essay: a folder of .txt essays or a JSON file of texts (tasks/essays.py)
    key_type: str = "words"
    value_type: str = "numbers"
    num_keys: int = 1  # keys with needles (the queried ones included)
    num_values: int = 1  # values per queried key
    num_queries: int = 1
    n_depths: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.num_queries > self.num_keys:
            raise TaskParamError("num_queries", f"{self.num_queries} is more than num_keys {self.num_keys} (the "
                                 "queried keys are among the keys with needles)")
        if (self.haystack == "essay") != bool(self.essay_source):
            raise TaskParamError("essay_source", "is the essay haystack's text (a folder of .txt essays or a JSON "
                                 "file) and is set with haystack: essay only")

    def _needle(self, v, key: str, value: str) -> str:
        if v.name == "english":
            return f" One of the special magic {TYPE_NAMES[self.value_type]} for {key} is: {value}."
        return f" {value} {key}"

    def _question(self, v, keys: list[str]) -> str:
        if v.name == "english":
            t, q = TYPE_NAMES[self.value_type], join_and(keys)
            return (f" What are all the special magic {t} for {q} mentioned in the provided text?"
                    f" The special magic {t} for {q} mentioned in the provided text are")
        return "".join(f" ? {k}" for k in keys)

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        if not 1 <= self.num_queries <= self.num_keys:
            raise ValueError(f"num_queries {self.num_queries} must be between 1 and num_keys {self.num_keys}")
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        prefix = []
        if v.name == "english":
            t = TYPE_NAMES[self.value_type]
            prefix = enc(f"Some special magic {t} are hidden within the following text. Make sure to memorize it."
                         f" I will quiz you about the {t} afterwards.")
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 21])
            n_distract = 0
            if self.haystack == "needle":  # enough distinct distractors to fill the length (the lexicon cycles its few)
                probe = make_items(np.random.default_rng(0), v, self.key_type, 1, "key")[0]
                pv = make_items(np.random.default_rng(0), v, self.value_type, 1, "value")[0]
                n_distract = length // max(1, len(enc(self._needle(v, probe, pv)))) + 1
                if v.name != "english":
                    n_distract = min(n_distract, len(v.keys) - self.num_keys,
                                     len(v.values) - self.num_keys * self.num_values)
            keys = make_items(rng, v, self.key_type, self.num_keys + n_distract, "key")
            keys, distract_keys = keys[: self.num_keys], keys[self.num_keys :]
            queried = keys[: self.num_queries]
            n_vals = [self.num_values if k in queried else 1 for k in keys]
            values = make_items(rng, v, self.value_type, sum(n_vals) + n_distract, "value")
            pairs, j = [], 0
            for k, n in zip(keys, n_vals):
                pairs += [(k, values[j + m]) for m in range(n)]
                j += n
            distract_values = values[j:]
            needles = [enc(self._needle(v, k, val)) for k, val in pairs]
            depths = list(rng.uniform(0, 1, size=len(pairs)))
            # pairs[0] is the first queried needle: inside its depth bin, at the uniform draw it already has
            depths[0] = binned_depth(i % self.n_depths, self.n_depths, depths[0])
            if self.haystack == "needle":  # RULER: the haystack is other keys' needles
                pieces = [self._needle(v, k, val) for k, val in zip(distract_keys, distract_values)]
                pieces = pieces * (1 + length // max(1, sum(len(enc(p)) for p in pieces)))
                pad = enc(" " + v.pad if v.name == "lexicon" else v.pad)
                hay = lambda n, p=pieces, pad=pad: pieces_ids(enc, n, p, pad)  # noqa: E731
            elif self.haystack == "essay":  # the same text for every sample, as RULER's
                hay = lambda n, e=list(essay_sentences(self.essay_source)): repeat_ids(enc, n, e)  # noqa: E731
            else:
                hay = haystack(rng, enc, v, self.haystack)
            ctx = build_context(rng, enc, length, needles, depths, hay=hay, prefix=prefix)
            refs = [val for k, val in pairs if k in queried]
            answer_offsets = [o for (k, _), o in zip(pairs, ctx.needle_offsets) if k in queried]
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx.ids,
                    question_ids=enc.question(self._question(v, queried)),
                    references=refs,
                    depth=ctx.needle_offsets[0] / length,  # where the needle really is (instructions included)
                    meta={"needle_offset": ctx.needle_offsets[0], "answer_offsets": answer_offsets,
                          "target_depth": float(depths[0]), "depth_bin": i % self.n_depths,
                          "vocab": v.name},
                )
            )
        return out
