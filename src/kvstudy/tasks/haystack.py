"""Token-level construction of synthetic long contexts (shared by the tasks and by `train-tiny`).

Written by hand because no library builds RULER-style contexts at an *exact* token length for an arbitrary
tokenizer: RULER itself pads at word level and bisects the haystack size. Here every piece is tokenized once and
the haystack is cut at token level, so `len(context) == length` always holds and needle offsets are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Words of the built-in vocabulary. Keys and values are disjoint from the filler so a retrieval answer can only
# come from a needle. The syllable filler keeps contexts readable in samples.csv.
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def filler_words(n: int = 256, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words: list[str] = []
    seen = set()
    while len(words) < n:
        w = "".join(rng.choice(_SYLLABLES, size=2))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


@dataclass(frozen=True)
class Lexicon:
    """The words synthetic tasks draw from. The built-in tiny model knows exactly these words."""

    keys: tuple[str, ...] = tuple(f"k{i:03d}" for i in range(128))
    values: tuple[str, ...] = tuple(f"v{i:03d}" for i in range(128))
    filler: tuple[str, ...] = field(default_factory=lambda: tuple(filler_words()))


LEXICON = Lexicon()


class PieceTokenizer:
    """Caches `tokenizer.encode(piece)` so contexts of 100k tokens are built from a few thousand encodes.

    With a chat template (`chat_template` auto and the tokenizer has one), the context starts with the template's
    user header instead of a bare BOS, and `question()` ends with the assistant header: the whole prompt is one
    user turn, and the header counts in the exact context length.
    """

    def __init__(self, tokenizer, chat_template: str = "none"):
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}
        self.head: list[int] | None = None
        self.tail: list[int] = []
        from kvstudy.tasks.prompt import split_prompt, uses_chat_template

        if uses_chat_template(tokenizer, chat_template):
            p = split_prompt(tokenizer, "{context}", {}, "context", chat_template)
            self.head, self.tail = p.head, p.tail

    def question(self, text: str) -> list[int]:
        return self(text) + self.tail

    def __call__(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is None:
            ids = self.tokenizer.encode(piece, add_special_tokens=False)
            self._cache[piece] = ids
        return ids

    @property
    def bos(self) -> list[int]:
        """What a context starts with: BOS, or the chat template's header (which carries its own BOS)."""
        if self.head is not None:
            return list(self.head)
        bos = self.tokenizer.bos_token_id
        return [] if bos is None else [bos]


def haystack_ids(rng: np.random.Generator, enc: PieceTokenizer, n_tokens: int, words) -> list[int]:
    """Random filler words, tokenized and cut to exactly `n_tokens` tokens."""
    out: list[int] = []
    while len(out) < n_tokens:
        for w in rng.choice(words, size=max(16, n_tokens - len(out))):
            out.extend(enc(" " + str(w)))
            if len(out) >= n_tokens:
                break
    return out[:n_tokens]


def repeat_ids(enc: PieceTokenizer, n_tokens: int, sentences: list[str]) -> tuple[list[int], list[int]]:
    """RULER's "noise" haystack: the sentences repeated, cut to `n_tokens`; also each sentence's start offset."""
    out: list[int] = []
    starts: list[int] = []
    while len(out) < n_tokens:
        for s in sentences:
            starts.append(len(out))
            out.extend(enc(" " + s))  # a leading space: the haystack follows instructions or a needle
            if len(out) >= n_tokens:
                break
    return out[:n_tokens], [b for b in starts if b <= n_tokens]


def pieces_ids(enc: PieceTokenizer, n_tokens: int, pieces, pad: list[int]) -> tuple[list[int], list[int]]:
    """Whole pieces (e.g. distractor needles) while they fit, then `pad` tokens up to exactly `n_tokens`."""
    out: list[int] = []
    starts: list[int] = []
    for piece in pieces:
        ids = enc(piece)
        if len(out) + len(ids) > n_tokens:
            break
        starts.append(len(out))
        out.extend(ids)
    if len(out) < n_tokens and not pad:
        raise ValueError("padding piece encodes to no tokens")
    while len(out) < n_tokens:
        out.extend(pad[: n_tokens - len(out)])
    return out, starts + [n_tokens]


def binned_depth(k: int, n_bins: int, u: float) -> float:
    """A depth inside bin k of `n_bins` equal bins of [0, 1), at fraction `u` (uniform in [0, 1)) of the bin.

    Tasks with depths spread samples over the bins and draw `u` per sample, so samples of one bin differ in their
    needle offset: replicates at one fixed offset would be one unit to a press that chooses by position."""
    return (k + u) / n_bins


@dataclass
class Context:
    ids: list[int]
    needle_offsets: list[int]  # token offset of each needle's first token, in input order


def build_context(
    rng: np.random.Generator,
    enc: PieceTokenizer,
    length: int,
    needles: list[list[int]],
    depths: list[float],
    filler=LEXICON.filler,
    hay=None,
    prefix: list[int] | None = None,
) -> Context:
    """A context of exactly `length` tokens (BOS + `prefix` included) with each needle inserted at its depth.

    Depth is the needle's start as a fraction of the haystack (0 = first token after BOS, 1 = the end). Needles
    never overlap: they are placed in depth order, each after the previous one. `hay(n)` may give another haystack
    (ids, allowed cut offsets): cuts then snap to the nearest allowed offset (e.g. sentence starts), as RULER
    inserts needles between sentences; the default is random `filler` words, cut anywhere.
    """
    bos = enc.bos + list(prefix or [])
    n_needle = sum(len(n) for n in needles)
    n_hay = length - len(bos) - n_needle
    if n_hay < 0:
        raise ValueError(f"length {length} is too short for {len(needles)} needles of {n_needle} tokens")
    if hay is None:
        hay_ids, allowed = haystack_ids(rng, enc, n_hay, filler), None
    else:
        hay_ids, allowed = hay(n_hay)
    hay = hay_ids
    order = np.argsort(depths, kind="stable")
    cuts = [int(round(depths[i] * n_hay)) for i in order]
    if allowed:
        allowed = sorted(set(allowed) | {n_hay})
        cuts = [min(allowed, key=lambda b: abs(b - c)) for c in cuts]
    ids, offsets, prev = list(bos), [0] * len(needles), 0
    for i, cut in zip(order, cuts):
        cut = max(cut, prev)
        ids.extend(hay[prev:cut])
        offsets[i] = len(ids)
        ids.extend(needles[i])
        prev = cut
    ids.extend(hay[prev:])
    assert len(ids) == length, (len(ids), length)
    return Context(ids=ids, needle_offsets=offsets)
