"""A search block -> its settings and candidates, and what the press and the study's tasks allow it.

Grid search (the cartesian product, filtered by the constraints) or `sample: n` random candidates (seeded); a grid
has at most MAX_GRID candidates.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

from kvstudy import schemas
from kvstudy.tasks import TASKS
from kvstudy.tuning.constraints import SearchError, parse_constraint, satisfies
from kvstudy.variants import TUNING_MODES, fixed_combos, fixed_names, search_modes

MODES = TUNING_MODES
DEFAULTS = {"constraints": [], **schemas.search_defaults()}  # seed, mode, objective, penalty: the schema's
MAX_DRAWS = 10_000  # random sampling: draws tried before giving up on finding n distinct valid candidates
MAX_GRID = 100_000  # candidates of a full grid, before constraints


def settings(search: dict) -> dict:
    """The search block with defaults filled in; `mode` always a list."""
    return {**DEFAULTS, **search, "mode": search_modes(search)}


def _is_range(v) -> bool:
    return isinstance(v, dict)


def _draw(rng, spec):
    if not _is_range(spec):
        return spec[int(rng.integers(len(spec)))]
    lo, hi = spec["low"], spec["high"]
    if spec.get("int"):
        if spec.get("log"):
            return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        return int(rng.integers(int(lo), int(hi) + 1))
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if spec.get("log") else rng.uniform(lo, hi)
    return float(f"{x:.3g}")  # 3 significant digits: readable slugs, and distinct draws stay distinct enough


def candidates(search: dict, fixed: dict, defaults: dict | None = None) -> list[dict]:
    """The candidate parameter dicts of a search, in a fixed order; constraints see the `fixed` params too, and the
    press's `defaults` for the parameters neither fixed nor searched.

    Grid: the cartesian product (parameters by name, values in the order given), filtered by the constraints.
    `sample: n`: n distinct valid candidates drawn with `seed` (all valid grid points when the space is finite and
    has no more than n)."""
    fixed = {**(defaults or {}), **fixed}
    s = settings(search)
    space = {k: s["params"][k] for k in sorted(s["params"])}  # by name: the same candidates however keys are ordered
    known = set(space) | set(fixed)
    trees = [parse_constraint(c, known) for c in s["constraints"]]
    ranged = [k for k, v in space.items() if _is_range(v)]
    size = math.prod(len(v) for v in space.values() if not _is_range(v))
    if not ranged and size > MAX_GRID:
        raise SearchError(f"params: the grid has {size:,} candidates, more than {MAX_GRID:,} (use sample: n, or "
                          "fewer values)")
    if "sample" not in s:
        if ranged:
            raise SearchError(f"params.{ranged[0]}: a range needs `sample: n` (random search)")
        grid = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
        return [c for c in grid if satisfies(trees, {**fixed, **c})]
    n = int(s["sample"])
    if not ranged:
        grid = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
        valid = [c for c in grid if satisfies(trees, {**fixed, **c})]
        if len(valid) <= n:
            return valid
    rng = np.random.default_rng(int(s["seed"]))
    out, seen = [], set()
    for _ in range(MAX_DRAWS):
        c = {k: _draw(rng, v) for k, v in space.items()}
        key = json.dumps(c, sort_keys=True)
        if key in seen or not satisfies(trees, {**fixed, **c}):
            continue
        seen.add(key)
        out.append(c)
        if len(out) == n:
            break
    return out


def check_search(entry: dict, spec) -> None:
    """Semantic checks of one press entry's search block (the schema checked its shape); SearchError names the key
    below `search`. `spec` is the press's PressSpec."""
    s = settings(entry["search"])
    for k, v in s["params"].items():
        if k == "compression_ratio":
            raise SearchError("params.compression_ratio: the compression is fixed during a search (the objective "
                              "compares candidates at one compression); give compression_ratio outside search:")
        if k not in spec.defaults:
            raise SearchError(f"params.{k}: press {spec.name!r} has no parameter {k!r}")
        if k in entry:
            raise SearchError(f"params.{k}: {k!r} is both fixed and searched")
        if _is_range(v):
            if not v["low"] < v["high"]:
                raise SearchError(f"params.{k}: low must be below high")
            if v.get("log") and v["low"] <= 0:
                raise SearchError(f"params.{k}: a log range needs low > 0")
    for i, c in enumerate(s["constraints"]):
        try:
            parse_constraint(c, set(s["params"]) | fixed_names(entry) | set(spec.defaults))
        except SearchError as e:
            raise SearchError(f"constraints[{i}]: {e}") from None
    for fixed in fixed_combos(entry):
        cands = candidates(s, fixed, spec.defaults)
        if not cands:
            shown = ", ".join(f"{k}={v}" for k, v in fixed.items())
            raise SearchError(f"constraints: no candidate satisfies them ({shown}); "
                              f"widen the grid/ranges or relax the constraints")
        if getattr(spec, "check_values", None):  # values only the press can judge, as for a listed variant
            own = {k: v for k, v in fixed.items() if k in spec.defaults}
            for c in cands:
                try:
                    spec.check_values({**spec.defaults, **own, **c})
                except ValueError as e:
                    raise SearchError(f"params: candidate {c}: {e}") from None




def check_tasks(entry: dict, config: dict) -> None:
    """What the study's tasks allow a search: the combined objective needs generated answers scored in [0, 1] (the
    error is measured on the question tokens); a global choice averages over tasks, so their scores must go the
    same way."""
    s = settings(entry["search"])
    for name, t in config["tasks"].items():
        cls = TASKS[t.get("kind", name)]
        if not cls.disjoint_dev(t):
            # dataset rows are picked from a fixed pool (the first n, or a seeded choice that may overlap): a dev
            # seed does not give different samples, so the dev split would leak into the test split
            raise SearchError(f"a search needs a dev split disjoint from the test split; task {name!r} "
                              f"({cls.name}) reads dataset rows without one (give it dev_split: {{fraction: 0.3}} "
                              "where its kind has that parameter; synthetic tasks and ruler_qa have one)")
        if s["objective"] == "combined" and (getattr(cls, "kind", "generate") != "generate"
                                             or not getattr(cls, "higher_is_better", True)):
            raise SearchError(f"objective: combined needs tasks with a question and a score in [0, 1]; task "
                              f"{name!r} ({cls.name}) has none (use objective: score)")
    if "global" in s["mode"]:
        ways = {getattr(TASKS[t.get("kind", n)], "higher_is_better", True) for n, t in config["tasks"].items()}
        if len(ways) > 1:
            raise SearchError("mode: global averages the score over tasks, but some tasks score lower-is-better "
                              "(perplexity) and others higher-is-better; use mode: task")
