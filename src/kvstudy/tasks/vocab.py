"""The words synthetic tasks are written in: RULER's English, or the built-in tiny model's lexicon.

A generator must work on any HF tokenizer *and* be expressible in the tokenizer of the model that runs it. The
tiny model's word-level tokenizer knows only `k###` keys, `v###` values, 256 syllable fillers, `?` and `.`, so
each task has a `lexicon` rendering (same structure, those words) besides its RULER/HELMET/LongProc English one.
`vocab: auto` picks English when the tokenizer encodes English text without unknown tokens, else the lexicon.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kvstudy.tasks.haystack import LEXICON

WORDS_FILE = Path(__file__).parent / "data" / "words.txt"
VOCABS = ("auto", "english", "lexicon")
HAYSTACKS = ("noise", "words")  # repeated sentences, random words (ruler_niah adds needle: distractor needles)
ITEM_TYPES = ("words", "numbers", "uuids")
# RULER's "noise" haystack (scripts/data/synthetic/niah.py)
NOISE = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]
_PROBE = "The grass is green. What are the 10 most common words? 1234567890 - abcdef"


@lru_cache(maxsize=1)
def english_words() -> tuple[str, ...]:
    """The shipped word list (common English nouns), deduplicated, in file order."""
    return tuple(dict.fromkeys(WORDS_FILE.read_text().split()))


@dataclass(frozen=True)
class Vocab:
    name: str
    words: tuple[str, ...]  # content words: cwe lists, fwe codes, `words` keys/values, city names
    keys: tuple[str, ...]
    values: tuple[str, ...]
    noise: tuple[str, ...]  # sentences of the repeated-sentence haystack
    pad: str  # a piece that encodes to one token (or few) to fill the last tokens to the exact length


ENGLISH = Vocab("english", (), (), (), tuple(NOISE), ".")
LEXICON_VOCAB = Vocab(
    "lexicon",
    tuple(LEXICON.filler),
    tuple(LEXICON.keys),
    tuple(LEXICON.values),
    (" ".join(LEXICON.filler[:11]) + " .",),
    LEXICON.filler[0],
)


def english_ok(tokenizer) -> bool:
    unk = tokenizer.unk_token_id
    return unk is None or unk not in tokenizer.encode(_PROBE, add_special_tokens=False)


def resolve_vocab(tokenizer, name: str) -> Vocab:
    if name == "auto":
        name = "english" if english_ok(tokenizer) else "lexicon"
    if name == "english":
        if not english_ok(tokenizer):
            raise ValueError("vocab 'english': this tokenizer cannot encode English text (use vocab: lexicon)")
        w = english_words()
        return Vocab("english", w, w, w, tuple(NOISE), ".")
    if name == "lexicon":
        return LEXICON_VOCAB
    raise ValueError(f"unknown vocab {name!r} (auto, english, lexicon)")


def make_items(rng: np.random.Generator, vocab: Vocab, kind: str, n: int, role: str = "key") -> list[str]:
    """`n` distinct keys or values of a RULER type: words, numbers (7 digits), uuids."""
    if kind == "words":
        pool = vocab.keys if role == "key" else vocab.values
        if vocab.name == "english":  # RULER's word needles are two-word compounds (adjective-noun)
            out: dict[str, None] = {}
            while len(out) < n:
                a, b = rng.choice(len(pool), size=2, replace=False)
                out[f"{pool[a]}-{pool[b]}"] = None
            return list(out)
        if n > len(pool):
            raise ValueError(f"{n} distinct {role}s asked, the lexicon has {len(pool)}")
        return [str(x) for x in rng.choice(pool, size=n, replace=False)]
    if vocab.name != "english":
        raise ValueError(f"{role}_type {kind!r} needs digits and letters; vocab is lexicon (this tokenizer cannot "
                         f"encode English: it is word-level), whose items are words only (use {role}_type: words)")
    if kind == "numbers":
        return [str(x) for x in rng.choice(np.arange(1_000_000, 10_000_000), size=n, replace=False)]
    if kind == "uuids":
        return [_uuid(rng) for _ in range(n)]
    raise ValueError(f"unknown {role} type {kind!r} (words, numbers, uuids)")


def _uuid(rng: np.random.Generator) -> str:
    h = "".join(f"{b:02x}" for b in rng.integers(0, 256, size=16))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def haystack(rng, enc, vocab: Vocab, kind: str):
    """A haystack maker for `build_context`: n -> (ids, allowed needle offsets)."""
    from kvstudy.tasks.haystack import haystack_ids, repeat_ids

    if kind == "noise":
        return lambda n: repeat_ids(enc, n, list(vocab.noise))
    if kind == "words":
        return lambda n: (haystack_ids(rng, enc, n, list(vocab.words)), None)
    raise ValueError(f"unknown haystack {kind!r} (noise, words, needle)")
