"""LongProc-style path traversal, generated offline: follow one-way connections from a city to a destination.

Every city has exactly one outgoing connection (LongProc's world), so the route is unique: the route's cities are
linked in a chain and every other city connects into the chain or into another distractor (trees hanging off the
route, never leaving it). The output is long: one line per hop. Scored with LongProc's partial accuracy: the
fraction of the reference route's lines the prediction gets right before its first wrong line (1.0 = the
whole route). Cities: capitalised shipped words (two-word names when more are needed); the lexicon rendering for
the tiny model writes a connection as `src dst .`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task
from kvstudy.tasks.haystack import PieceTokenizer, build_context
from kvstudy.tasks.vocab import VOCABS, resolve_vocab

TRANSIT = ["bus", "train", "plane", "ferry"]
INSTRUCTIONS = (
    "In a completely hypothetical world, there are a number of cities. Each city has a one-way connection to only"
    " one other city via a specific transit method (bus, train, plane, or ferry). Provide the route from a city to"
    " another city. Mark the route with <Route> and </Route> tags, one line per step, in the format:"
    " From <CITY_NAME>, take a <TRANSIT_METHOD> to <CITY_NAME>."
    " The details of the cities are as follows:"
)


def city_names(rng, v, n: int) -> list[str]:
    words = list(v.words)
    if v.name != "english":
        pool = list(v.keys) + list(v.values)
        if n > len(pool):
            raise ValueError(f"{n} cities asked, the lexicon has {len(pool)} names")
        return [str(x) for x in rng.choice(pool, size=n, replace=False)]
    out: dict[str, None] = {}
    for w in rng.permutation(words)[:n]:
        out[str(w).capitalize()] = None
    while len(out) < n:
        a, b = rng.choice(len(words), size=2, replace=False)
        out[f"{words[a].capitalize()} {words[b].capitalize()}"] = None
    return list(out)


@register
@dataclass
class PathTraversal(Task):
    name = "path_traversal"
    metric = "route_partial_accuracy"
    description = "LongProc path traversal: list every hop of the unique route between two cities (long output)"
    param_choices = {"vocab": VOCABS}
    stop_words: tuple | None = ()  # multi-line answers: generation stops at end of sequence only
    param_ranges = {"route_hops": (1, 10_000)}

    n_samples: int = 10
    max_new_tokens: int = 1024
    vocab: str = "auto"
    route_hops: int = 20  # lines of the answer: the output length knob

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        eng = v.name == "english"
        head = enc(INSTRUCTIONS) if eng else []
        budget = length - len(enc.bos) - len(head)

        def line(a, b, t):
            return f" {a} is a lively city. You can travel from {a} to {b} by {t}." if eng else f" {a} {b} ."

        def hop(a, b, t):
            return f"From {a}, take a {t} to {b}." if eng else f"{a} {b} ."

        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 27])
            n_max = 255 if not eng else 4 * length  # candidate cities; only those that fit are used
            names = city_names(rng, v, min(n_max, self.route_hops + 1 + max(8, length // 8)))
            route = names[: self.route_hops + 1]
            edges = [(a, b, str(rng.choice(TRANSIT))) for a, b in zip(route, route[1:])]
            if sum(len(enc(line(*e))) for e in edges) > budget:
                raise ValueError(f"length {length} is too short for a route of {self.route_hops} hops")
            used = sum(len(enc(line(*e))) for e in edges)
            placed = list(route[:-1])  # a distractor may connect to any city but the destination
            for c in names[len(route) :]:
                e = (c, str(rng.choice(placed)), str(rng.choice(TRANSIT)))
                n = len(enc(line(*e)))
                if used + n > budget:
                    break
                edges.append(e)
                placed.append(c)
                used += n
            order = rng.permutation(len(edges))
            n_pad = budget - used
            if eng:  # fewer than one line's tokens short: padding before the list
                body = [t for j in order for t in enc(line(*edges[j]))]
                ctx = enc.bos + head + (enc(v.pad) * n_pad)[:n_pad] + body
            else:  # the lexicon's 255 names fill only part of a long context: lines spread in filler
                lines = [enc(line(*edges[j])) for j in order]
                ctx = build_context(rng, enc, length, lines, sorted(rng.uniform(0, 1, size=len(lines))),
                                    filler=v.words).ids
            assert len(ctx) == length
            src, dst = route[0], route[-1]
            q = (f" Now find the route from {src} to {dst} based on the information above. <Route>\n" if eng
                 else f" ? {src} {dst}")
            answer = "\n".join(hop(*e) for e in edges[: self.route_hops])
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=enc.question(q),
                    references=[answer],
                    meta={"n_cities": len(edges) + 1, "route_hops": self.route_hops, "pad_tokens": n_pad,
                          "vocab": v.name},
                )
            )
        return out
