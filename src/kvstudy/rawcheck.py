"""A raw result as the tables may read it: valid JSON, the schema, the contract's value ranges, and the job of its
path in the current config.

Every reader of raw results goes through `read` (aggregate, `kvstudy status`, the Snakefile's check before a run,
kvstudy.rawguard): a file that fails is named in one line (`RawResultError`: `PATH: why`) instead of a traceback, a
silently wrong row, or a "done" it is not. What is checked, beyond `kvstudy/schemas/result.schema.json`:
- `status`: ok results have a finite score, at least one sample and `n` samples; oom and failed ones no score
  (failed ones an error and no samples);
- the value range of the metric: every score, the job's and each sample's, lies in [0, 1], except perplexity's
  (>= 1; its `higher_is_better` is false), and the metric is the one the job's task scores with;
- sub-scores (a task's extra metrics, a judged task's sub-scores): each in [0, 1] in every sample, and
  `quality.sub_scores` their means (the results.csv and samples.csv columns of kvstudy.metric_columns agree);
- the job: equal to the job the current config gives the file's path (`expected`, from kvstudy.grid.jobs or
  kvstudy.tuning.trial_jobs): model, task and its parameters, length, press and its parameters, ratio, seed,
  split; a tuned variant's chosen parameters extend the fixed ones; `task_resolved` (where recorded; results
  older than issue 14 lack it) agrees with the task's parameters, `auto` values aside; `chat_template` and
  `config_overrides` where recorded.

The schema is compiled with fastjsonschema (a Snakemake dependency), about 20x faster than jsonschema's validator:
0.1 ms for a 20-sample result, so 10,000 results are checked in about a second.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import fields
from pathlib import Path

from kvstudy import schemas
from kvstudy.job import Job, as_jobs

SCHEMA_PATH = schemas.RESULT
# what every job carries in its raw result (kvstudy.evaluate.JOB_KEYS), compared with the config's job
IDENTITY_KEYS = ("model", "model_path", "task", "task_params", "length", "press", "method", "compression_ratio",
                 "seed")
PPL_FLOOR = 1.0 - 1e-9  # exp(mean NLL) with NLL >= 0


class InvalidResults(ValueError):
    """Raw results that fail kvstudy.rawcheck; `lines` names each file and why, one line apiece."""

    def __init__(self, errors: list):
        self.lines = [f"aggregate: invalid raw result {e}" for e in errors]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(self.lines[0] + more)


class RawResultError(ValueError):
    """One raw result that cannot be read as the contract says; the message is `PATH: why`, one line."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@functools.cache
def _validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    try:
        import fastjsonschema

        compiled = fastjsonschema.compile(schema)

        def run(raw):
            try:
                compiled(raw)
            except fastjsonschema.JsonSchemaValueException as e:
                return e.message.replace("data.", "", 1).replace("data ", "(top level) ", 1)
            return None
    except ImportError:  # the reference validator: slower, same verdicts
        import jsonschema

        validator = jsonschema.Draft202012Validator(schema)

        def run(raw):
            err = jsonschema.exceptions.best_match(validator.iter_errors(raw))
            if err is None:
                return None
            where = ".".join(map(str, err.absolute_path)) or "(top level)"
            return f"{where}: {err.message.splitlines()[0]}"
    return run


def load(path) -> dict:
    """The JSON object in `path`; RawResultError (one line) when it is missing, unreadable, empty or not JSON."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RawResultError(path, f"cannot be read ({e.strerror or e})") from None
    if not data.strip():
        raise RawResultError(path, "empty file")
    try:
        raw = json.loads(data)
    except UnicodeDecodeError as e:
        raise RawResultError(path, f"not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RawResultError(path, f"not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
    if not isinstance(raw, dict):
        raise RawResultError(path, f"not a JSON object (a {type(raw).__name__})")
    return raw


def read(path, expected: Job | None = None) -> dict:
    """The raw result in `path`, checked (see the module docstring) against `expected`, the job the config gives
    that path (None: the schema and contract only). Raises RawResultError naming the file."""
    raw = load(path)
    why = problem(raw, expected)
    if why:
        raise RawResultError(path, why)
    return raw


def problem(raw: dict, expected: Job | dict | None = None) -> str | None:
    """Why `raw` is not a valid raw result (of the job `expected`; a dict is made a Job), in one line; None when it
    is."""
    return _validator()(raw) or _contract(raw) or (_identity(raw, as_jobs([expected])[0]) if expected else None)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _contract(raw: dict) -> str | None:
    """What the schema cannot say: status-dependent fields and the metric's value range."""
    status, q, samples = raw["status"], raw["quality"], raw["samples"]
    if status != "ok":
        if q["score"] is not None:
            return f"status {status} with quality.score {q['score']!r} (a job that did not finish has no score)"
        if status == "failed" and (samples or not isinstance(raw.get("error"), str)):
            return "status failed needs an error line and no samples"
        return None
    if not _finite(q["score"]):
        return f"status ok with quality.score {q['score']!r} (a finite number is needed)"
    if not samples:
        return "status ok with no samples"
    if q["n"] != len(samples):
        return f"quality.n is {q['n']} but there are {len(samples)} samples"
    ppl = q["metric"] == "perplexity"
    if q.get("higher_is_better", True) == ppl:
        return (f"quality.higher_is_better {q.get('higher_is_better', True)} does not fit metric "
                f"{q['metric']!r} (false exactly for perplexity)")
    bad = _out_of_range(q["score"], ppl)
    if bad:
        return f"quality.score {q['score']!r} {bad}"
    for i, s in enumerate(samples):
        bad = _out_of_range(s["score"], ppl)
        if bad:
            return f"samples[{i}].score {s['score']!r} {bad}"
    return _sub_scores(q.get("sub_scores") or {}, samples)


def _sub_scores(subs: dict, samples: list) -> str | None:
    """Each sub-score (an extra metric, a judged sub-score) is in [0, 1] in every sample, and quality.sub_scores
    holds its mean: what results.csv's column shows is what samples.csv's column averages."""
    for name, value in subs.items():
        for i, s in enumerate(samples):
            bad = "is missing" if s.get(name) is None else _out_of_range(s[name], False)
            if bad:
                return f"samples[{i}].{name} {bad} (quality.sub_scores has {name!r})"
        mean = sum(s[name] for s in samples) / len(samples)
        if not math.isclose(value, mean, rel_tol=1e-9, abs_tol=1e-12):
            return f"quality.sub_scores.{name} is {value!r}, the mean of its samples' values is {mean!r}"
    return None


def _out_of_range(x, ppl: bool) -> str | None:
    if not _finite(x):
        return "is not a finite number"
    if ppl and x < PPL_FLOOR:
        return "is below 1 (a perplexity is at least 1)"
    if not ppl and not 0 <= x <= 1:
        return "is outside [0, 1] (every metric but perplexity scores in [0, 1])"
    return None


def _plain(x):
    """JSON's view of a value (tuples as lists), as the raw result holds it."""
    return json.loads(json.dumps(x))


def _identity(raw: dict, job: Job) -> str | None:
    """Where the raw result's job differs from the config's job `job` (of the same path), or None."""
    have = raw["job"]
    want = _plain({k: getattr(job, k) for k in IDENTITY_KEYS})
    for key in IDENTITY_KEYS:
        if have.get(key) != want[key]:
            return (f"job.{key} is {json.dumps(have.get(key), sort_keys=True)}, the config's job for this path has "
                    f"{json.dumps(want[key], sort_keys=True)} (another job's result, or the config changed)")
    if have.get("split") != job.split:
        return f"job.split is {have.get('split')!r}, the config's job for this path has {job.split!r}"
    why = _params(have, job)
    if why:
        return why
    if "chat_template" in have and have["chat_template"] != (job.chat_template or "auto"):
        return f"job.chat_template is {have['chat_template']!r}, the config says {job.chat_template or 'auto'!r}"
    if "config_overrides" in have and have["config_overrides"] != _plain(job.config_overrides):
        return "job.config_overrides differ from the config's model config_overrides"
    metric = expected_metric(job) if raw["status"] == "ok" else None
    if metric and raw["quality"]["metric"] != metric:
        return f"quality.metric is {raw['quality']['metric']!r}, the job's task scores with {metric!r}"
    return _resolved(have, job)


def _params(have: dict, job: Job) -> str | None:
    """Press parameters: equal; a tuned variant's (chosen on the dev split) include the fixed ones."""
    want, got = _plain(job.params), have.get("params") or {}
    tuning = job.tuning
    if not tuning:
        return None if got == want else (f"job.params are {json.dumps(got, sort_keys=True)}, the config's job for "
                                         f"this path has {json.dumps(want, sort_keys=True)}")
    fixed = {k: v for k, v in want.items() if got.get(k) != v}
    if fixed:
        k = next(iter(fixed))
        return f"job.params.{k} is {got.get(k)!r}, the config fixes it at {want[k]!r}"
    mine = have.get("tuning") or {}
    for k in ("press", "mode"):
        if mine.get(k) != tuning.get(k):
            return f"job.tuning.{k} is {mine.get(k)!r}, the config's tuned variant has {tuning.get(k)!r}"
    return None


def _resolved(have: dict, job: Job) -> str | None:
    """`task_resolved` (where recorded) against the task's parameters as the config and the task's defaults give
    them: a changed default leaves results that are no longer this config's task. Parameters the task resolves per
    tokenizer (`auto`) and ones only one side knows are not compared."""
    resolved = have.get("task_resolved")
    if not resolved:
        return None
    configured = _configured(job.task_kind, json.dumps(job.task_params, sort_keys=True))
    for key, value in configured.items():
        if key in resolved and value != "auto" and resolved[key] != value:
            return (f"job.task_resolved.{key} is {resolved[key]!r}, the config's task {job.task!r} has {value!r} "
                    "(the task's default changed, or the config did)")
    return None


@functools.cache
def _configured(kind: str, params_json: str) -> dict:
    from kvstudy.tasks import TASKS

    cls = TASKS.get(kind)
    if cls is None:
        return {}
    return _plain({**{f.name: f.default for f in fields(cls)}, **json.loads(params_json)})


def expected_metric(job: Job) -> str | None:
    """The metric the job's task scores with (a parameter may choose it), or None where the task cannot be made
    here (it may need what only a job's machine has)."""
    return _metric(job.task_kind, json.dumps(job.task_params, sort_keys=True))


@functools.cache
def _metric(kind: str, params_json: str) -> str | None:
    from kvstudy.tasks import TASKS

    try:
        return TASKS[kind](**json.loads(params_json)).metric
    except Exception:  # noqa: BLE001 -- an unknown metric is not checked
        return None
