"""Press hyper-parameter search inside the DAG: search spaces, trials on a dev split, selection, tuned variants.

A press entry of the config may carry a `search:` block (docs/tuning.md):

    - method: snapkv
      compression_ratio: 0.5                        # fixed (lists expand as usual: one search per value)
      search:
        params: {window_size: [8, 16, 32], kernel_size: {low: 1, high: 9, int: true}}
        sample: 6                                   # n random candidates (seeded); without it the full grid
        constraints: ["kernel_size <= window_size"]
        mode: [global, task]                        # per (model, press) over all tasks / per (model, press, task)
        objective: score                            # or `combined` = attention-output error + penalty x (1 - score)

Trials are ordinary eval jobs (`split: dev`) on samples the test split never sees: a task's generator at seed
`DEV_SEED_OFFSET + seed`, while test seeds are below the offset (schema). Every (candidate, task, length, seed) is
one trial with its own raw result `results/raw/{model}/{task}/{length}/{candidate}/dev/seed{dev_seed}.json`, so a
search is cached and resumes where it stopped. A `tune` rule selects the best candidate and writes
`results/analysis/tuning/{model}/{press}.json` (global) or `.../{press}/{task}.json` (per task); the test-split
variants `{press}-tuned-global` / `{press}-tuned-task` read the chosen parameters at run time.

Constraints are small arithmetic/boolean expressions over parameter names, evaluated by a whitelist AST walker
(no package for safe expression evaluation is installed; `eval` on config text is not acceptable). The walker is
bounded so that no constraint can hang validation or the DAG build: exponents at most MAX_EXPONENT (a constant one
is refused when parsed, a computed one makes the candidate fail the constraint), arithmetic on numbers only (no
`'a' * 10**9`), and a search grid of at most MAX_GRID candidates.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import math
import operator
from pathlib import Path

import numpy as np

DEV_SEED_OFFSET = 1_000_000  # test seeds are < this (config schema), dev seeds are >= it: the splits never share one
DEV_RAW = "results/raw/{model}/{task}/{length}/{press}/dev/seed{seed}.json"
DEV_LOG = "logs/eval/{model}/{task}/{length}/{press}/dev/seed{seed}.log"
CHOICE_GLOBAL = "results/analysis/tuning/{model}/{press}.json"
CHOICE_TASK = "results/analysis/tuning/{model}/{press}/{task}.json"
MODES = ("global", "task")
DEFAULTS = {"seed": 0, "constraints": [], "mode": list(MODES), "objective": "score", "penalty": 1.0}
MAX_DRAWS = 10_000  # random sampling: draws tried before giving up on finding n distinct valid candidates
MAX_EXPONENT = 64  # |b| in a ** b: 10 ** 10 ** 10 would take longer than the heat death of the study
MAX_GRID = 100_000  # candidates of a full grid, before constraints


class SearchError(ValueError):
    """A bad search block; the message names the key below `search` (`constraints: ...`)."""


def dev_seed(seed: int) -> int:
    """The dev-split data seed of a study seed: never equal to any test seed (those are < DEV_SEED_OFFSET)."""
    return DEV_SEED_OFFSET + int(seed)


# --- constraints ----------------------------------------------------------------------------------------------

def _pow(a, b):
    """a ** b with |b| <= MAX_EXPONENT and an integer result of at most 1024 bits (nested powers grow fast)."""
    if abs(b) > MAX_EXPONENT:
        raise OverflowError(f"exponent {b} is above {MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0 and math.log2(abs(a)) * b > 1024:
        raise OverflowError("power above 2 ** 1024")
    return operator.pow(a, b)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCS = {"min": min, "max": max, "abs": abs, "log2": math.log2, "sqrt": math.sqrt}


def _names(tree) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCS)


def parse_constraint(text: str, known: set[str]):
    """Parse one constraint; raise SearchError for syntax outside the whitelist or an unknown name."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise SearchError(f"{text!r} is not an expression ({e.msg})") from None
    except ValueError as e:  # e.g. an integer literal longer than Python converts
        raise SearchError(f"{text!r} is not an expression ({e})") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
               ast.Compare, ast.Name, ast.Load, ast.Constant, ast.Call, *_BINOPS, *_CMPOPS)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise SearchError(f"{text!r}: {type(node).__name__} is not allowed (arithmetic, comparisons, and/or/not, "
                              f"{', '.join(_FUNCS)})")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            raise SearchError(f"{text!r}: only the functions {', '.join(_FUNCS)} may be called")
        if isinstance(node, ast.Call) and node.keywords:
            raise SearchError(f"{text!r}: functions take no keyword arguments")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
                and _is_number(node.right.value) and abs(node.right.value) > MAX_EXPONENT:
            raise SearchError(f"{text!r}: exponent {node.right.value} is above {MAX_EXPONENT}")
    for node in ast.walk(tree):  # a power of constants is computed now: one out of bounds is refused here
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _names(node):
            try:
                _eval(node, {})
            except OverflowError as e:
                raise SearchError(f"{text!r}: {ast.unparse(node)}: {e}") from None
            except (ZeroDivisionError, ValueError, TypeError):
                pass
    unknown = _names(tree) - known
    if unknown:
        raise SearchError(f"{text!r}: unknown name {sorted(unknown)[0]!r} (parameters: {', '.join(sorted(known))})")
    return tree


def _eval(node, env: dict):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, env) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else +v)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if not (_is_number(left) and _is_number(right)):  # no 'a' * 10**9
            raise TypeError("arithmetic on numbers only")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*(_eval(a, env) for a in node.args))
    raise SearchError(f"cannot evaluate {type(node).__name__}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float))  # bools too


def satisfies(trees, env: dict) -> bool:
    try:
        return all(bool(_eval(t, env)) for t in trees)
    except (ZeroDivisionError, ValueError, TypeError, OverflowError):
        return False  # e.g. log2(0): the candidate is outside the constraint's domain


# --- search space -> candidates -------------------------------------------------------------------------------


def settings(search: dict) -> dict:
    """The search block with defaults filled in; `mode` always a list."""
    s = {**DEFAULTS, **search}
    s["mode"] = [s["mode"]] if isinstance(s["mode"], str) else list(dict.fromkeys(s["mode"]))
    return s


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
            raise SearchError(f"params.compression_ratio: the compression is fixed during a search (the objective "
                              f"compares candidates at one compression); give compression_ratio outside search:")
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


def fixed_names(entry: dict) -> set[str]:
    return {k for k in entry if k not in ("method", "search")}


def fixed_combos(entry: dict) -> list[dict]:
    """The fixed (not searched) parameter combinations of an entry, compression_ratio included."""
    keys = sorted(fixed_names(entry))
    grids = [entry[k] if isinstance(entry[k], list) else [entry[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*grids)]


# --- the study's searches, tuned variants and trial jobs ------------------------------------------------------


def _base_slug(method: str, fixed: dict) -> str:
    from kvstudy.grid import slug

    fixed = dict(fixed)
    ratio = fixed.pop("compression_ratio", None)
    return slug(method, ratio, fixed)


def searches(config: dict) -> list[dict]:
    """One search per (searched entry, fixed combination): base press slug, method, fixed params, settings and
    candidates (each with its trial slug)."""
    from kvstudy.grid import slug
    from kvstudy.presses import get_press

    out = []
    for entry in config["presses"]:
        if "search" not in entry:
            continue
        s = settings(entry["search"])
        defaults = get_press(entry["method"]).defaults
        for fixed in fixed_combos(entry):
            ratio = fixed.get("compression_ratio")
            params = {k: v for k, v in fixed.items() if k != "compression_ratio"}
            cands = [
                {"press": slug(entry["method"], ratio, {**params, **c}), "params": c}
                for c in candidates(s, fixed, defaults)
            ]
            out.append({"press": _base_slug(entry["method"], fixed), "method": entry["method"], "fixed": fixed,
                        "settings": s, "candidates": cands})
    return out


def tuned_variants(method: str, fixed: dict, search: dict) -> list[dict]:
    """The test-split variants of one searched entry's fixed combination: `{base}-tuned-{mode}` per mode. Their
    `params` are the fixed ones; the chosen ones are read at run time from the tuning JSON (`apply_choice`)."""
    base = _base_slug(method, fixed)
    ratio = fixed.get("compression_ratio")
    params = {k: v for k, v in fixed.items() if k != "compression_ratio"}
    return [
        {"press": f"{base}-tuned-{mode}", "method": method, "params": params,
         "compression_ratio": float(ratio) if ratio is not None else 0.0,
         "tuning": {"press": base, "mode": mode}}
        for mode in settings(search)["mode"]
    ]


def choice_path(model: str, press: str, mode: str, task: str | None = None) -> str:
    return CHOICE_GLOBAL.format(model=model, press=press) if mode == "global" else CHOICE_TASK.format(
        model=model, press=press, task=task)


def trial_jobs(config: dict, search: dict | None = None) -> list[dict]:
    """Every trial (dev-split eval job) of the study, or of one search: built by kvstudy.grid.jobs from a study of
    the candidates, so a trial has exactly the fields of a test job, plus `split: dev` (and `attn_error` where
    the objective needs it)."""
    from kvstudy.grid import jobs

    out = []
    for s in [search] if search else searches(config):
        st = settings(s["settings"])
        tasks = {name: ({**t, "n_samples": st["n_samples"]} if "n_samples" in st else t)
                 for name, t in config["tasks"].items()}
        sub = {
            "models": config["models"], "tasks": tasks, "lengths": st.get("lengths", config["lengths"]),
            "seeds": [dev_seed(x) for x in config.get("seeds", [0])], "eval": config.get("eval", {}),
            "presses": [{"method": s["method"], **s["fixed"], **c["params"]} for c in s["candidates"]],
        }
        for job in jobs(sub):
            job["split"] = "dev"
            job["tuning_of"] = s["press"]
            if st["objective"] == "combined":
                job["attn_error"] = True
            out.append(job)
    return out


def dev_raw_path(job: dict) -> str:
    return DEV_RAW.format(**job)


def render_trial_status(config: dict, root: Path = Path(".")) -> str:
    """One line per search: its trials done / oom / failed (a log, no result) / missing / invalid (a file that is
    not a readable result: kvstudy.rawcheck.load; the Snakefile checks trial results in full before `tune` reads
    them), and its choices made."""
    from kvstudy.rawcheck import RawResultError, load

    lines = ["tuning trials (dev split):"]
    for s in searches(config):
        counts = {"done": 0, "oom": 0, "failed": 0, "missing": 0, "invalid": 0}
        for job in trial_jobs(config, s):
            raw = Path(root) / dev_raw_path(job)
            if raw.exists():
                try:
                    status = load(raw).get("status")
                    if status not in ("ok", "oom", "failed"):
                        raise RawResultError(raw, f"status {status!r} is not ok, oom or failed")
                except RawResultError as e:
                    lines.append(f"  invalid trial result {e}")
                    counts["invalid"] += 1
                    continue
                counts["oom" if status == "oom" else "done"] += 1
            else:
                counts["failed" if (Path(root) / DEV_LOG.format(**job)).exists() else "missing"] += 1
        made = total = 0
        for model in config["models"]:
            for mode in settings(s["settings"])["mode"]:
                for task in [None] if mode == "global" else list(config["tasks"]):
                    total += 1
                    made += (Path(root) / choice_path(model, s["press"], mode, task)).exists()
        shown = "  ".join(f"{k}={v}" for k, v in counts.items() if v or k != "invalid")
        lines.append(f"  {s['press']:30s} {shown}  choices={made}/{total}")
    return "\n".join(lines)


def apply_choice(job: dict, root: Path = Path(".")) -> dict:
    """A tuned test-split job with the parameters its tuning JSON chose (read at run time)."""
    t = job["tuning"]
    path = Path(root) / choice_path(job["model"], t["press"], t["mode"], job["task"])
    choice = json.loads(path.read_text())
    if choice["press"] != t["press"] or choice["model"] != job["model"]:
        raise ValueError(f"{path}: tuning of {choice['model']}/{choice['press']}, not {job['model']}/{t['press']}")
    return {**job, "params": {**job["params"], **choice["chosen"]["params"]},
            "tuning": {**t, "file": str(path), "chosen": choice["chosen"]["press"]}}


# --- selection ------------------------------------------------------------------------------------------------


def read_trials(paths) -> "pd.DataFrame":
    """One row per trial result: press (candidate), task, length, seed, status, score, attn_error."""
    import pandas as pd

    rows = []
    for p in paths:
        raw = json.loads(Path(p).read_text())
        job, fid = raw["job"], raw.get("fidelity") or {}
        rows.append({"model": job["model"], "press": job["press"], "task": job["task"], "length": job["length"],
                     "seed": job["seed"], "status": raw["status"], "score": raw["quality"]["score"],
                     "attn_error": fid.get("attn_output_error"), "params": json.dumps(job["params"], sort_keys=True)})
    return pd.DataFrame(rows, columns=["model", "press", "task", "length", "seed", "status", "score", "attn_error",
                                       "params"])


def objective_of(score: float, attn_error: float | None, objective: str, penalty: float) -> float:
    """Higher is better for `score`; `combined` (attention-output error + penalty x (1 - score)) is minimised."""
    if objective == "score":
        return score
    if attn_error is None or (isinstance(attn_error, float) and math.isnan(attn_error)):
        raise ValueError("objective 'combined' needs the attention-output error of every trial (attn_error)")
    return attn_error + penalty * (1.0 - score)


def candidate_table(trials, candidate_order: list[str], objective: str, penalty: float):
    """Per candidate and task (and `task = "all"`: the mean over tasks, each task weighted equally): mean score,
    mean attention-output error, objective, number of trials, and whether any trial ran out of memory.

    A task's value is the mean over its lengths and seeds. A candidate with an OOM trial is infeasible
    (objective NaN): it can never be chosen."""
    import pandas as pd

    rows = []
    for press in candidate_order:
        t = trials[trials.press == press]
        per_task = []
        for task, g in t.groupby("task", sort=True):
            oom = bool((g.status != "ok").any())
            score = float(g.score.astype(float).mean()) if not oom else math.nan
            err = g.attn_error.astype(float).mean() if g.attn_error.notna().any() and not oom else None
            obj = math.nan if oom else objective_of(score, err, objective, penalty)
            per_task.append({"press": press, "task": task, "score": score, "attn_error": err, "objective": obj,
                             "n_trials": len(g), "oom": oom})
        rows += per_task
        if per_task:
            df = pd.DataFrame(per_task)
            oom = bool(df.oom.any())
            rows.append({"press": press, "task": "all", "score": math.nan if oom else df.score.mean(),
                         "attn_error": None if oom or df.attn_error.isna().all() else df.attn_error.mean(),
                         "objective": math.nan if oom else df.objective.mean(), "n_trials": int(df.n_trials.sum()),
                         "oom": oom})
    return pd.DataFrame(rows, columns=["press", "task", "score", "attn_error", "objective", "n_trials", "oom"])


def higher_is_better(config: dict, objective: str, tasks=None) -> bool:
    """Direction of the objective: `combined` is minimised; `score` follows the tasks (perplexity: lower)."""
    from kvstudy.tasks import TASKS

    if objective == "combined":
        return False
    kinds = [config["tasks"][t].get("kind", t) for t in (tasks or config["tasks"])]
    return all(getattr(TASKS[k], "higher_is_better", True) for k in kinds)


def check_tasks(entry: dict, config: dict) -> None:
    """What the study's tasks allow a search: the combined objective needs generated answers scored in [0, 1] (the
    error is measured on the question tokens); a global choice averages over tasks, so their scores must go the
    same way."""
    from kvstudy.tasks import TASKS

    s = settings(entry["search"])
    for name, t in config["tasks"].items():
        cls = TASKS[t.get("kind", name)]
        if "source" in {f.name for f in dataclasses.fields(cls)}:
            # dataset rows are picked from a fixed pool (the first n, or a seeded choice that may overlap): a dev
            # seed does not give different samples, so the dev split would leak into the test split
            raise SearchError(f"a search needs a dev split disjoint from the test split; task {name!r} "
                              f"({cls.name}) reads dataset rows, which have none yet (synthetic tasks only)")
        if s["objective"] == "combined" and (getattr(cls, "kind", "generate") != "generate"
                                             or not getattr(cls, "higher_is_better", True)):
            raise SearchError(f"objective: combined needs tasks with a question and a score in [0, 1]; task "
                              f"{name!r} ({cls.name}) has none (use objective: score)")
    if "global" in s["mode"]:
        ways = {getattr(TASKS[t.get("kind", n)], "higher_is_better", True) for n, t in config["tasks"].items()}
        if len(ways) > 1:
            raise SearchError("mode: global averages the score over tasks, but some tasks score lower-is-better "
                              "(perplexity) and others higher-is-better; use mode: task")


def select(table, candidate_order: list[str], task: str, higher: bool) -> str:
    """The best candidate for `task` ("all" = global): max (or, `higher` false, min) objective; ties go to the
    candidate listed first (grid / draw order), so the choice is deterministic."""
    t = table[(table.task == task) & table.objective.notna()]
    if t.empty:
        raise ValueError(f"no feasible candidate for task {task!r} (every candidate ran out of memory or has no "
                         f"trial)")
    order = {p: i for i, p in enumerate(candidate_order)}
    best = t.objective.max() if higher else t.objective.min()
    winners = t[np.isclose(t.objective, best, rtol=0, atol=1e-12)]
    return min(winners.press, key=order.__getitem__)


def tune_study(config: dict, model: str, press: str, task: str | None = None) -> dict:
    """The part of the study one choice depends on (the `--study` of `kvstudy tune`): its model, its task (or all
    tasks for the global choice), lengths, seeds, stop words and its press entry. A rule parameter: anything else
    changing in the config (a new press, another model) does not redo the choice, and so does not rerun the tuned
    test jobs that read it."""
    entry = next(e for e in config["presses"] if "search" in e and any(
        _base_slug(e["method"], f) == press for f in fixed_combos(e)))
    tasks = config["tasks"] if task is None else {task: config["tasks"][task]}
    lengths = entry["search"].get("lengths", config["lengths"])
    return {"models": {model: config["models"][model]}, "tasks": tasks, "lengths": lengths,
            "seeds": config.get("seeds", [0]),
            "eval": {"stop_words": config.get("eval", {}).get("stop_words", [".", "\n"])}, "presses": [entry]}


def find_search(config: dict, press: str) -> dict:
    for s in searches(config):
        if s["press"] == press:
            return s
    raise KeyError(f"no search for press {press!r} in this study")


def tune(config: dict, model: str, press: str, task: str | None, root: Path = Path(".")) -> dict:
    """The tuning choice of (model, press[, task]) from its finished trials (global when task is None)."""
    s = find_search(config, press)
    st = settings(s["settings"])
    jobs = [j for j in trial_jobs(config, s) if j["model"] == model and (task is None or j["task"] == task)]
    trials = read_trials(Path(root) / dev_raw_path(j) for j in jobs)
    order = [c["press"] for c in s["candidates"]]
    table = candidate_table(trials, order, st["objective"], st["penalty"])
    key = "all" if task is None else task
    higher = higher_is_better(config, st["objective"], None if task is None else [task])
    chosen = select(table, order, key, higher)
    params = {c["press"]: c["params"] for c in s["candidates"]}
    mine = table[table.task == key].set_index("press")

    def record(p):
        r = mine.loc[p]
        return {"press": p, "params": params[p], "objective": _num(r.objective), "score": _num(r.score),
                "attn_error": _num(r.attn_error), "n_trials": int(r.n_trials), "oom": bool(r.oom)}

    return {
        "model": model, "press": press, "method": s["method"], "fixed": s["fixed"],
        "mode": "global" if task is None else "task", "task": task,
        "objective": st["objective"], "penalty": st["penalty"] if st["objective"] == "combined" else None,
        "better": "higher" if higher else "lower",
        "split": "dev", "dev_seeds": sorted({j["seed"] for j in jobs}), "lengths": sorted({j["length"] for j in jobs}),
        "tasks": sorted({j["task"] for j in jobs}), "n_trials": len(jobs),
        "chosen": record(chosen),
        "candidates": [record(p) for p in order if p in mine.index],
    }


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# --- summary tables -------------------------------------------------------------------------------------------


def _read_choices(root: Path, model: str, s: dict, st: dict, tasks) -> tuple[dict | None, dict]:
    """(the global choice or None, {task: per-task choice}) of one search for one model, as the tune rules wrote
    them."""
    read = lambda mode, task=None: json.loads((root / choice_path(model, s["press"], mode, task)).read_text())  # noqa: E731
    glob = read("global") if "global" in st["mode"] else None
    per_task = {t: read("task", t) for t in tasks} if "task" in st["mode"] else {}
    return glob, per_task


def _choice_row(config, model, s, st, task, table, glob, per_task, results) -> dict:
    """One row of choices.csv: (model, search, task or "mean")."""
    key = "all" if task == "mean" else task
    row = {"model": model, "search": s["press"], "task": task, "objective": st["objective"]}
    look = table[table.task == key].set_index("press")
    if glob:
        g = glob["chosen"]["press"]
        row.update(global_choice=g, global_params=json.dumps(glob["chosen"]["params"]),
                   global_dev=_num(look.objective.get(g)))
    if per_task and task == "mean":  # the per-task choices' dev objectives, averaged like the global objective
        vals = [_num(table[(table.task == t) & (table.press == c["chosen"]["press"])].objective.iloc[0])
                for t, c in per_task.items()]
        row.update(task_choice="(per task)", task_params="",
                   task_dev=float(np.mean(vals)) if None not in vals else None)
    elif per_task:
        c = per_task[task]["chosen"]
        row.update(task_choice=c["press"], task_params=json.dumps(c["params"]),
                   task_dev=_num(look.objective.get(c["press"])))
    if row.get("global_dev") is not None and row.get("task_dev") is not None:
        sign = 1.0 if higher_is_better(config, st["objective"]) else -1.0
        row["dev_gain"] = sign * (row["task_dev"] - row["global_dev"])
    if results is not None:  # test split: the tuned variants' scores (mean over lengths and seeds)
        for mode in st["mode"]:
            r = results[(results.model == model) & (results.press == f"{s['press']}-tuned-{mode}")
                        & (results.status == "ok")]
            if task != "mean":
                r = r[r.task == task]
            # "mean": each task weighted equally, like the global objective
            row[f"{mode}_test_score"] = float(r.groupby("task").score.mean().mean()) if len(r) else None
        if row.get("global_test_score") is not None and row.get("task_test_score") is not None:
            row["test_gain"] = row["task_test_score"] - row["global_test_score"]
    return row


def summary(config: dict, root: Path, results_csv: Path | None):
    """(trials, candidates, choices) tables of every search of the study.

    choices: one row per (model, press, task) and (model, press, "mean"): the per-task and the global choice, their
    dev objective on that task, the dev gain of per-task tuning over global (positive = per-task better), and,
    when results.csv is given, the test-split score of both tuned variants and the test gain (per-task minus
    global score)."""
    import pandas as pd

    root = Path(root)
    trial_frames, cand_frames, choice_rows = [], [], []
    results = pd.read_csv(results_csv) if results_csv and Path(results_csv).exists() else None
    for s in searches(config):
        st = settings(s["settings"])
        order = [c["press"] for c in s["candidates"]]
        params = {c["press"]: json.dumps(c["params"], sort_keys=True) for c in s["candidates"]}
        for model in config["models"]:
            jobs = [j for j in trial_jobs(config, s) if j["model"] == model]
            trials = read_trials(root / dev_raw_path(j) for j in jobs)
            trials.insert(1, "search", s["press"])
            trial_frames.append(trials)
            glob, per_task = _read_choices(root, model, s, st, config["tasks"])
            table = candidate_table(trials, order, st["objective"], st["penalty"])
            table.insert(0, "model", model)
            table.insert(1, "search", s["press"])
            table["params"] = table.press.map(params)
            table["chosen_global"] = table.press.eq(glob["chosen"]["press"]) if glob else False
            table["chosen_task"] = [t in per_task and per_task[t]["chosen"]["press"] == p
                                    for p, t in zip(table.press, table.task)]
            table["objective_name"] = st["objective"]
            table["better"] = ["higher" if higher_is_better(config, st["objective"], None if t == "all" else [t])
                               else "lower" for t in table.task]
            cand_frames.append(table)
            choice_rows += [_choice_row(config, model, s, st, task, table, glob, per_task, results)
                            for task in [*config["tasks"], "mean"]]
    cols = ["model", "search", "task", "objective", "global_choice", "global_params", "global_dev", "task_choice",
            "task_params", "task_dev", "dev_gain", "global_test_score", "task_test_score", "test_gain"]
    choices = pd.DataFrame(choice_rows)
    choices = choices[[c for c in cols if c in choices.columns]]
    return (pd.concat(trial_frames, ignore_index=True) if trial_frames else pd.DataFrame(),
            pd.concat(cand_frames, ignore_index=True) if cand_frames else pd.DataFrame(), choices)


def write_summary(config: dict, root: Path, results_csv: Path | None, out_dir: Path) -> list[Path]:
    from kvstudy.aggregate import write_csv_atomic

    trials, cands, choices = summary(config, root, results_csv)
    out_dir = Path(out_dir)
    paths = [out_dir / "trials.csv", out_dir / "candidates.csv", out_dir / "choices.csv", out_dir / "choices.tex"]
    write_csv_atomic(trials, paths[0])
    write_csv_atomic(cands, paths[1])
    write_csv_atomic(choices, paths[2])
    tex = choices.drop(columns=[c for c in ("global_params", "task_params") if c in choices.columns])
    paths[3].write_text(tex.to_latex(index=False, float_format="%.3f", na_rep="--", escape=True))
    return paths
