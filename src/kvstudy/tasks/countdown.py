"""LongProc-style Countdown, generated offline: reach a target from four numbers with + - * /, showing the
depth-first search. The context is worked examples (our own solver's search trace and solution) up to the exact
length; the question is a new puzzle; the output is the search and a `<Solution>` of three equations.

Scored by checking the final solution (metric `countdown_solution`): each equation's arithmetic, that it uses
available numbers exactly once, and that the last result is the target — parsed with a regular expression,
never evaluated. Needs digits and `+-*/=`, so there is no lexicon rendering: the tiny model cannot run it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task
from kvstudy.tasks.haystack import PieceTokenizer
from kvstudy.tasks.vocab import VOCABS, resolve_vocab

INSTRUCTIONS = (
    "Countdown: combine the given numbers with +, -, * and / (each number used exactly once, intermediate results"
    " non-negative integers) to reach the target. Search depth first, writing each step, then give the solution"
    " as three equations between <Solution> and </Solution>.\n"
)


def _ops(a: int, b: int):
    a, b = max(a, b), min(a, b)
    yield f"{a} + {b}", a + b
    yield f"{a} - {b}", a - b
    yield f"{a} * {b}", a * b
    if b and a % b == 0:
        yield f"{a} / {b}", a // b


def solve(nums: list[int], target: int, trace: list[str], depth: int = 0, limit: int = 400) -> list[str] | None:
    """Depth-first search; appends one line per tried step to `trace`; the equations of a solution, or None."""
    if len(nums) == 1:
        return [] if nums[0] == target else None
    for i in range(len(nums)):
        for j in range(i + 1, len(nums)):
            rest = [x for k, x in enumerate(nums) if k not in (i, j)]
            for expr, val in _ops(nums[i], nums[j]):
                if len(trace) >= limit:
                    return None
                left = [val] + rest
                ok = len(left) > 1 or val == target
                trace.append(f"{'  ' * depth}{expr} = {val}, numbers {left}" + ("" if ok else ", not the target"))
                sub = solve(left, target, trace, depth + 1, limit)
                if sub is not None:
                    return [f"{expr} = {val}"] + sub
    return None


def puzzle(rng) -> tuple[list[int], int]:
    """Four numbers and a target reachable from them (a random expression over the numbers)."""
    while True:
        nums = [int(x) for x in rng.integers(1, 40, size=4)]
        vals = list(nums)
        while len(vals) > 1:
            i, j = sorted(rng.choice(len(vals), size=2, replace=False))
            options = list(_ops(vals[i], vals[j]))
            _, v = options[int(rng.integers(len(options)))]
            vals = [v] + [x for k, x in enumerate(vals) if k not in (i, j)]
        if 1 <= vals[0] <= 200:
            return nums, vals[0]


def worked(nums, target, max_lines: int) -> str | None:
    trace: list[str] = []
    sol = solve(nums, target, trace, limit=max_lines)
    if sol is None:
        return None
    return "\n".join(trace) + "\n<Solution>\n" + "\n".join(sol) + "\n</Solution>"


@register
@dataclass
class Countdown(Task):
    name = "countdown"
    metric = "countdown_solution"
    description = "LongProc countdown: reach a target with + - * / over 4 numbers, search shown (long output)"
    param_choices = {"vocab": VOCABS}
    stop_words: tuple | None = ()  # multi-line answers: generation stops at end of sequence only
    param_ranges = {"max_trace_lines": (1, 100_000)}

    n_samples: int = 10
    max_new_tokens: int = 2048
    vocab: str = "auto"
    max_trace_lines: int = 150  # per worked example in the context

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        enc = PieceTokenizer(tokenizer, self.chat_template)
        v = resolve_vocab(tokenizer, self.vocab)
        if v.name != "english":
            raise ValueError("countdown needs a tokenizer that encodes digits and + - * / = (vocab english)")
        head = enc(INSTRUCTIONS)
        budget = length - len(enc.bos) - len(head)
        out = []
        for i in range(self.n_samples):
            rng = np.random.default_rng([seed, length, i, 28])
            body: list[int] = []
            n_demo = misses = 0
            while misses < 50:  # a worked example that does not fit is skipped; shorter ones fill the rest
                nums, target = puzzle(rng)
                text = worked(nums, target, self.max_trace_lines)
                if text is None:
                    continue
                ids = enc(f"# Example\nNumbers: {nums}, target: {target}\n{text}\n\n")
                if len(body) + len(ids) > budget:
                    misses += 1
                    continue
                body += ids
                n_demo += 1
            pad = enc("\n") or enc(" ")
            n_pad = budget - len(body)
            ctx = enc.bos + head + (pad * n_pad)[:n_pad] + body  # the few tokens left: blank lines before
            assert len(ctx) == length
            nums, target = puzzle(rng)
            while worked(nums, target, 10_000) is None:  # solvable by construction; the check documents it
                nums, target = puzzle(rng)
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=enc.question(f"# Problem\nNumbers: {nums}, target: {target}\n"),
                    references=[json.dumps({"numbers": nums, "target": target})],
                    meta={"n_examples": n_demo, "pad_tokens": n_pad, "vocab": v.name},
                )
            )
        return out
