"""Load and validate a study config: JSON schema first, then what a schema cannot know (registries, paths).

Every problem is reported as one line naming the key (`config error: presses[2].method: ...`), before any job
runs. Shared by the Snakefile and the tests.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from fnmatch import fnmatchcase
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A bad study config; the message is one line naming the offending key. Preflight (kvstudy.preflight) may find
    several problems: `lines` holds each, one line apiece, the message is the first (and how many more)."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or [message]


def _where(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    # libyaml's loader where present: the schema is read in every snakemake process
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _fill_defaults(config: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def validate(config: dict, schema: dict | None = None, preflight: bool = False) -> dict:
    """Return the config with defaults filled in, or raise ConfigError naming the culprit.

    With `preflight`, also load each model's config and tokenizer and build every task's samples at every length
    (kvstudy.preflight), so that no job fails for a reason knowable before it starts; cached once passed."""
    schema = schema or load_schema()
    config = copy.deepcopy(config)
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if err is not None:
        msg = err.message.splitlines()[0]
        raise ConfigError(f"config error: {_where(err.absolute_path)}: {msg}")
    figures_given = "figures" in config
    _fill_defaults(config, schema)
    _check_models(config)
    _check_tasks(config)
    _check_presses(config)
    _check_searches(config)  # press hyper-parameter searches (kvstudy.tuning)
    _check_exclude(config)

    from kvstudy.grid import jobs
    from kvstudy.plots.specs import drawable, resolve as resolve_figures

    kept = jobs(config)
    _check_cells(config, kept)
    if not figures_given:  # the default figures: those this study can draw
        config["figures"] = drawable(config, kept)
    try:
        resolve_figures(config, kept)
    except ValueError as e:
        raise ConfigError(f"config error: {e}") from None
    if preflight:
        from kvstudy.preflight import check

        check(config)
    return config


def _check_cells(config: dict, kept: list[dict]) -> None:
    """Press x task and press x model combinations that cannot run, among the jobs the study keeps (an `exclude:`
    entry leaves such a cell out)."""
    from kvstudy.grid import variants
    from kvstudy.presses import PRESSES
    from kvstudy.presses.variant import split_options
    from kvstudy.tasks import TASKS

    entry = {}  # variant slug -> index of its press entry, for the message
    for i, p in enumerate(config["presses"]):
        entry.update({v["press"]: i for v in variants({"presses": [p]})})
    for j in kept:
        i, method = entry.get(j["press"]), j["method"]
        press_params, options = split_options(j["params"])
        hint = f"(leave it out with exclude: [{{task: {j['task']}, press: {j['press']}}}])"
        if options["query_aware"] and getattr(TASKS[j["task_kind"]], "kind", "") == "perplexity":
            raise ConfigError(f"config error: presses[{i}].query_aware: task {j['task']!r} (perplexity) has no "
                              f"question to show the press {hint}")
        spec = PRESSES[method]
        if spec.masking and spec.attention(press_params) is None and j["attn_implementation"] == "eager":
            raise ConfigError(f"config error: models.{j['model']}.attn_implementation: press {method!r} masks keys "
                              "per head, which kvpress cannot do with eager attention "
                              f"(leave it out with exclude: [{{model: {j['model']}, method: {method}}}])")


def _check_models(config: dict) -> None:
    from kvstudy.models import resolve

    for name, m in config["models"].items():
        try:
            resolve(m["path"])
        except ValueError as e:
            raise ConfigError(f"config error: models.{name}.path: {e}") from None


def _check_tasks(config: dict) -> None:
    from kvstudy.tasks import TASKS

    for name, t in config["tasks"].items():
        kind = t.get("kind", name)
        if kind not in TASKS:
            raise ConfigError(f"config error: tasks.{name}: unknown task kind {kind!r} (registered: {', '.join(TASKS)})")
        known = {f.name for f in fields(TASKS[kind])}
        for key in t:
            if key != "kind" and key not in known:
                raise ConfigError(f"config error: tasks.{name}.{key}: task {kind!r} has no parameter {key!r}")
        try:  # parameters a task checks itself (a scorer name, a LongProc subtask, a vocab)
            TASKS[kind](**{k: v for k, v in t.items() if k != "kind"})
        except (ValueError, TypeError) as e:
            # a TaskParamError names its parameter; "param: why" also points at it (tasks.cite.judge: ...)
            key, _, why = str(e).partition(": ")
            if getattr(e, "key", None):
                where = f"tasks.{name}.{e.key}: {e}"
            elif key in known and why:
                where = f"tasks.{name}.{key}: {why}"
            else:
                where = f"tasks.{name}: {e}"
            raise ConfigError(f"config error: {where}") from None


def _check_presses(config: dict) -> None:
    from kvstudy.grid import variants
    from kvstudy.presses import PRESSES, VARIANT_OPTIONS
    from kvstudy.presses.variant import check_options, split_options

    for i, p in enumerate(config["presses"]):
        method = p["method"]
        if method not in PRESSES:
            raise ConfigError(
                f"config error: presses[{i}].method: unknown press {method!r} (registered: {', '.join(PRESSES)})"
            )
        spec = PRESSES[method]
        if spec.has_ratio and "compression_ratio" not in p:
            raise ConfigError(f"config error: presses[{i}].compression_ratio: required for press {method!r}")
        for key in p:
            if key in ("method", "search") or (key == "compression_ratio" and spec.has_ratio) or key in VARIANT_OPTIONS:
                continue
            if key not in spec.defaults:
                raise ConfigError(f"config error: presses[{i}].{key}: press {method!r} has no parameter {key!r}")
        for v in variants({"presses": [p]}):  # values no schema can check (wrapped press names, files, combos)
            press_params, options = split_options(v["params"])
            try:
                check_options(method, options)
                if spec.check_values:
                    spec.check_values({**spec.defaults, **press_params})
            except ValueError as e:
                raise ConfigError(f"config error: presses[{i}].{e}") from None
    seen: set[str] = set()
    for v in variants(config):
        if v["press"] in seen:
            raise ConfigError(f"config error: presses: two entries give the same variant {v['press']!r}")
        seen.add(v["press"])


def _check_exclude(config: dict) -> None:
    """Each `exclude:` entry names the study's own models, tasks, lengths, seeds, methods and variants, and leaves
    out at least one job; none touches a searched press (its dev-split trials are not left out with it)."""
    from kvstudy.grid import _as_list, jobs, matches, variants

    vs = variants(config)
    known = {"model": list(config["models"]), "task": list(config["tasks"]), "length": config["lengths"],
             "seed": config["seeds"], "method": list(dict.fromkeys(v["method"] for v in vs))}
    for i, entry in enumerate(config["exclude"]):
        for key, want in entry.items():
            for w in _as_list(want):
                if key == "press" and not any(fnmatchcase(v["press"], str(w)) for v in vs):
                    raise ConfigError(f"config error: exclude[{i}].press: {w!r} matches no press variant of this "
                                      f"study (e.g. {', '.join(v['press'] for v in vs[:4])})")
                if key != "press" and w not in known[key]:
                    shown = ", ".join(map(str, known[key]))
                    raise ConfigError(f"config error: exclude[{i}].{key}: {w!r} is not a {key} of this study ({shown})")
        on_variants = {k: entry[k] for k in ("method", "press") if k in entry}
        hit = [v for v in vs if matches(on_variants, v)]
        if not hit:
            raise ConfigError(f"config error: exclude[{i}]: no press variant is both {on_variants} (it leaves out "
                              "no job)")
        tuned = [v["press"] for v in hit if "tuning" in v]
        if tuned:
            raise ConfigError(f"config error: exclude[{i}]: leaves out jobs of the tuned variant {tuned[0]!r}; "
                              "a searched press's dev-split trials cannot be left out (drop the entry or the search)")
    if config["exclude"] and not jobs(config):
        raise ConfigError("config error: exclude: leaves out every job of the study")


def _check_searches(config: dict) -> None:
    """`search:` blocks of press entries: known parameters, valid constraints, at least one candidate."""
    from kvstudy.presses import PRESSES
    from kvstudy.tuning import SearchError, check_search, check_tasks

    for i, p in enumerate(config["presses"]):
        if "search" in p:
            try:
                check_search(p, PRESSES[p["method"]])
                check_tasks(p, config)
            except SearchError as e:
                raise ConfigError(f"config error: presses[{i}].search.{e}") from None
    if "tuning_sweep" in config["figures"] and not any("search" in p for p in config["presses"]):
        raise ConfigError("config error: figures: tuning_sweep needs a press with a search: block")


def load(path: str | Path, preflight: bool = False) -> dict:
    """The validated config of a study file (`kvstudy status`; `kvstudy validate` runs the preflight after it)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config error: {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {path}: expected a mapping at the top level")
    return validate(raw, preflight=preflight)
