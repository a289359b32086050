"""Load and validate a study config: JSON schema first, then what a schema cannot know (registries, paths).

Every problem is reported as one line naming the key (`config error: presses[2].method: ...`), before any job
runs. Shared by the Snakefile and the tests.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import fields
from fnmatch import fnmatchcase
from pathlib import Path

import jsonschema
import yaml

from kvstudy import schemas
from kvstudy.errors import ConfigError  # noqa: F401  (re-exported: callers know it here)
from kvstudy.pairs import variant_pairs
from kvstudy.study import Study
from kvstudy.variants import dropped, variants

# attention implementations kvpress's per-head key masking cannot run under (kvpress refuses eager; flex takes no
# per-head mask: kvstudy.presses.flex_attention)
NO_MASKING = ("eager", "flex_attention")

SCHEMA_PATH = schemas.CONFIG  # package data: an installed kvstudy validates a study without a checkout
MAX_SLUG = 200  # press variant names are directory names (at most 255 bytes on most file systems)


def _where(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return schemas.config() if path == SCHEMA_PATH else schemas.load(path)


def _message(err) -> str:
    """jsonschema's message in one short line; for a value the schema refuses by its pattern or by `not`, what the
    schema's description says is allowed instead of the regular expression."""
    shown = repr(err.instance)
    shown = shown if len(shown) <= 60 else shown[:56] + "...'"
    desc = " ".join(str(err.schema.get("description", "")).split())
    if err.validator in ("pattern", "not"):
        return f"{shown} is not allowed" + (f" ({desc})" if desc else f" (must match {err.validator_value})")
    if err.validator == "maxLength":
        return f"{shown} is longer than {err.validator_value} characters"
    return err.message.splitlines()[0]


def fill_defaults(config: dict, schema: dict) -> None:
    """Fill in place every `default:` of the schema that applies to `config`: the keys of an object's `properties`,
    in the objects below them and in the entries of a map (`additionalProperties`: models.NAME.dtype). Not inside
    lists: a press entry is written into variant names and rule parameters as given (a search block's settings are
    filled by kvstudy.tuning.settings). Hand-written rather than jsonschema's validator-extension recipe, which sets
    defaults wherever the validator looks, `oneOf` branches that fail included. A key whose absence means something
    (a task parameter: the task's own default; a model's chat_template: the task decides) has no `default:`."""
    if not isinstance(config, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        fill_defaults(config.get(key), sub)
    entry = schema.get("additionalProperties")
    if isinstance(entry, dict):
        for key in config.keys() - schema.get("properties", {}).keys():
            fill_defaults(config[key], entry)


def validate(config: dict, schema: dict | None = None, preflight: bool = False) -> dict:
    """Return the config with defaults filled in, or raise ConfigError naming the culprit: the schema first, then
    each section's own checks (what a schema cannot know: registries, files, the grid).

    With `preflight`, also load each model's config and tokenizer and build every task's samples at every length
    (kvstudy.preflight), so that no job fails for a reason knowable before it starts; cached once passed."""
    schema = schema or load_schema()
    config = copy.deepcopy(config)
    _check_schema(config, schema)
    figures_given = "figures" in config
    fill_defaults(config, schema)
    config["timing"].setdefault("lengths", list(config["lengths"]))  # the quality grid's lengths, filled once
    for check in SECTION_CHECKS:
        check(config)
    from kvstudy.grid import jobs

    kept = jobs(config)
    _check_cells(config, kept)
    _check_figures(config, kept, figures_given)
    if preflight:
        from kvstudy.preflight import check

        check(config)
    return config


def study(config: dict, preflight: bool = False) -> Study:
    """The validated config (validate: defaults filled, each section checked) as a frozen kvstudy.study.Study."""
    return Study.from_config(validate(config, preflight=preflight))


def _check_schema(config: dict, schema: dict) -> None:
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if err is not None:
        raise ConfigError(_where(err.absolute_path), _message(err))


def _check_fetch(config: dict) -> None:
    """Model revisions and `data:` entries (what rule fetch_* will fetch)."""
    from kvstudy.fetch import check_config

    if problems := check_config(config):
        raise ConfigError.several(problems)


def _check_figures(config: dict, kept: list, given: bool) -> None:
    """The study's figures: those it names, each drawable from its jobs; without `figures:`, those it can draw."""
    from kvstudy.plots.specs import drawable, resolve

    if not given:
        config["figures"] = drawable(config, kept)
    try:
        resolve(config, kept)
    except ValueError as e:
        raise ConfigError.below("", e) from None


def _check_cells(config: dict, kept: list) -> None:  # kept: kvstudy.job.Job
    """Press x task and press x model combinations that cannot run, among the jobs the study keeps (an `exclude:`
    entry leaves such a cell out)."""
    from kvstudy.presses import PRESSES
    from kvstudy.presses.variant import split_options
    from kvstudy.tasks import TASKS

    entry = {}  # variant slug -> index of its press entry, for the message
    for i, p in enumerate(config["presses"]):
        entry.update({v["press"]: i for v in variants({"presses": [p]})})
    for j in kept:
        i, method = entry.get(j.press), j.method
        press_params, options = split_options(j.params)
        hint = f"(leave it out with exclude: [{{task: {j.task}, press: {j.press}}}])"
        if options["query_aware"] and getattr(TASKS[j.task_kind], "kind", "") == "perplexity":
            raise ConfigError(f"presses[{i}].query_aware", f"task {j.task!r} (perplexity) has no "
                              f"question to show the press {hint}")
        spec = PRESSES[method]
        if spec.masking and spec.attention(press_params) is None and j.attn_implementation in NO_MASKING:
            raise ConfigError(f"models.{j.model}.attn_implementation", f"press {method!r} masks keys "
                              f"per head, which cannot be done with {j.attn_implementation} attention "
                              f"(leave it out with exclude: [{{model: {j.model}, method: {method}}}])")


def _check_models(config: dict) -> None:
    from kvstudy.models import resolve

    for name, m in config["models"].items():
        try:
            resolve(m["path"])
        except ValueError as e:
            raise ConfigError(f"models.{name}.path", str(e)) from None


def _check_tasks(config: dict) -> None:
    from kvstudy.tasks import TASKS

    for name, t in config["tasks"].items():
        kind = t.get("kind", name)
        if kind not in TASKS:
            raise ConfigError(f"tasks.{name}", f"unknown task kind {kind!r} (registered: {', '.join(TASKS)})")
        known = {f.name for f in fields(TASKS[kind])}
        for key in t:
            if key != "kind" and key not in known:
                raise ConfigError(f"tasks.{name}.{key}", f"task {kind!r} has no parameter {key!r}")
        try:  # parameters a task checks itself (a scorer name, a LongProc subtask, a vocab)
            TASKS[kind](**{k: v for k, v in t.items() if k != "kind"})
        except (ValueError, TypeError) as e:
            # a TaskParamError names its parameter, and so does "param: why" where param is one (tasks.cite.judge)
            keyed = getattr(e, "key", None) or str(e).partition(": ")[0] in known
            raise (ConfigError.below(f"tasks.{name}", e) if keyed else ConfigError(f"tasks.{name}", str(e))) from None


def _check_resources(config: dict) -> None:
    """`resources.tasks` names the study's own tasks (a typo would silently leave a task on eval's resources)."""
    for name in config["resources"].get("tasks", {}):
        if name not in config["tasks"]:
            raise ConfigError(f"resources.tasks.{name}", f"no such task (tasks: {', '.join(config['tasks'])})")


def _check_presses(config: dict) -> None:
    from kvstudy.presses import PRESSES

    for i, p in enumerate(config["presses"]):
        if p["method"] not in PRESSES:
            raise ConfigError(f"presses[{i}].method",
                              f"unknown press {p['method']!r} (registered: {', '.join(PRESSES)})")
        _check_press_keys(i, p, PRESSES[p["method"]])
        _check_press_variants(i, p, PRESSES[p["method"]])
    for line in dropped(config):  # said at every validation (kvstudy validate, snakemake -n), never silent
        print(f"note: {line}", file=sys.stderr)
    _check_variant_names(config)


def _check_press_keys(i: int, p: dict, spec) -> None:
    """A press entry's keys: a ratio or a cache size where the press needs one, and parameters the press has, with
    values of their type and range."""
    from kvstudy.presses import VARIANT_OPTIONS

    method = p["method"]
    sized = spec.sizes and "cache_size" in p  # an absolute budget instead of a ratio (kvstudy.presses.budget)
    if spec.has_ratio and "compression_ratio" not in p and not sized:
        raise ConfigError(f"presses[{i}].compression_ratio", f"required for press {method!r}"
                          + (" (or cache_size: tokens kept per layer)" if spec.sizes else ""))
    if sized and "compression_ratio" in p:
        raise ConfigError(f"presses[{i}].cache_size", "give compression_ratio or cache_size, not both")
    for key in p:
        if key in ("method", "search") or (key == "compression_ratio" and spec.has_ratio) or key in VARIANT_OPTIONS:
            continue
        values = p[key] if isinstance(p[key], list) else [p[key]]
        if key == "cache_size" and spec.sizes:
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= PRESS_VALUE_MAX:
                    raise ConfigError(f"presses[{i}].cache_size", f"{value!r} is not a positive "
                                      "integer (tokens kept per layer)")
            continue
        if key not in spec.defaults:
            raise ConfigError(f"presses[{i}].{key}", f"press {method!r} has no parameter {key!r}")
        for value in values:
            why = press_value_problem(value, spec.defaults[key])
            if why:
                raise ConfigError(f"presses[{i}].{key}", f"{value!r} {why}")


def _check_press_variants(i: int, p: dict, spec) -> None:
    """Values no schema can check, per variant of the entry (wrapped press names, files, combinations)."""
    from kvstudy.presses.variant import check_options, split_options

    for v in variants({"presses": [p]}):
        press_params, options = split_options(v["params"])
        try:
            check_options(p["method"], options)
            if spec.check_values:
                spec.check_values({**spec.defaults, **press_params})
        except ValueError as e:
            raise ConfigError.below(f"presses[{i}]", e) from None


def _check_variant_names(config: dict) -> None:
    """Variant names are directory names of every result, log and benchmark of the variant: short, and unique."""

    seen: set[str] = set()
    for v in variants(config):
        if len(v["press"]) > MAX_SLUG:
            raise ConfigError("presses", f"variant name {v['press'][:40]}... is {len(v['press'])} "
                              f"characters, more than {MAX_SLUG} (shorten its string parameters)")
        if v["press"] in seen:
            raise ConfigError("presses", f"two entries give the same variant {v['press']!r}")
        seen.add(v["press"])


PRESS_VALUE_MAX = 10**9  # press parameters are sizes, counts, fractions and seeds: none is negative or above this


def press_value_problem(value, default) -> str | None:
    """Why `value` cannot be a press parameter whose default is `default` (its type, and for numbers the range
    [0, PRESS_VALUE_MAX]), or None. The press's own check_values judges the rest."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "is not true or false"
    if isinstance(default, (int, float)):
        integral = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            return "is not an integer" if integral else "is not a number"
        if not 0 <= value <= PRESS_VALUE_MAX:
            return f"is outside [0, {PRESS_VALUE_MAX}]"
        return None
    if isinstance(default, str):
        return None if isinstance(value, str) else "is not a string"
    return None


def _check_compare(config: dict) -> None:
    """`compare:` names presses of the study that share a budget (kvstudy.pairs)."""
    try:
        variant_pairs(config)
    except ValueError as e:  # "compare[i]: why"
        raise ConfigError(*str(e).split(": ", 1)) from None


def _check_exclude(config: dict) -> None:
    """Each `exclude:` entry names the study's own models, tasks, lengths, seeds, methods and variants, and leaves
    out at least one job; none touches a searched press (its dev-split trials are not left out with it)."""
    from kvstudy.grid import _as_list, jobs, matches

    vs = variants(config)
    known = {"model": list(config["models"]), "task": list(config["tasks"]), "length": config["lengths"],
             "seed": config["seeds"], "method": list(dict.fromkeys(v["method"] for v in vs))}
    for i, entry in enumerate(config["exclude"]):
        for key, want in entry.items():
            for w in _as_list(want):
                if key == "press" and not any(fnmatchcase(v["press"], str(w)) for v in vs):
                    raise ConfigError(f"exclude[{i}].press", f"{w!r} matches no press variant of this "
                                      f"study (e.g. {', '.join(v['press'] for v in vs[:4])})")
                if key != "press" and w not in known[key]:
                    shown = ", ".join(map(str, known[key]))
                    raise ConfigError(f"exclude[{i}].{key}", f"{w!r} is not a {key} of this study ({shown})")
        on_variants = {k: entry[k] for k in ("method", "press") if k in entry}
        hit = [v for v in vs if matches(on_variants, v)]
        if not hit:
            raise ConfigError(f"exclude[{i}]", f"no press variant is both {on_variants} (it leaves out "
                              "no job)")
        tuned = [v["press"] for v in hit if "tuning" in v]
        if tuned:
            raise ConfigError(f"exclude[{i}]", f"leaves out jobs of the tuned variant {tuned[0]!r}; "
                              "a searched press's dev-split trials cannot be left out (drop the entry or the search)")
    if config["exclude"] and not jobs(config):
        raise ConfigError("exclude", "leaves out every job of the study")


def _check_searches(config: dict) -> None:
    """`search:` blocks of press entries: known parameters, valid constraints, at least one candidate."""
    from kvstudy.presses import PRESSES
    from kvstudy.tuning import SearchError, check_search, check_tasks

    for i, p in enumerate(config["presses"]):
        if "search" in p:
            _check_search_values(i, p["search"]["params"], PRESSES[p["method"]].defaults)
            try:
                check_search(p, PRESSES[p["method"]])
                check_tasks(p, config)
            except SearchError as e:
                raise ConfigError.below(f"presses[{i}].search", e) from None
    if "tuning_sweep" in config["figures"] and not any("search" in p for p in config["presses"]):
        raise ConfigError("figures", "tuning_sweep needs a press with a search: block")


def _check_search_values(i: int, space: dict, defaults: dict) -> None:
    """A search's values (list items, range ends) are values of the parameter, as a listed variant's are."""
    for key, values in space.items():
        if key not in defaults:
            continue  # check_search names it
        ranged = isinstance(values, dict)
        if ranged and (isinstance(defaults[key], bool) or not isinstance(defaults[key], (int, float))):
            raise ConfigError(f"presses[{i}].search.params.{key}", "a range needs a numeric parameter "
                              "(give a list of values)")
        for value in [values["low"], values["high"]] if ranged else values:
            why = press_value_problem(value, defaults[key])
            if why:
                raise ConfigError(f"presses[{i}].search.params.{key}", f"{value!r} {why}")


# each section's checks after the schema's, in this order (press entries before the searches and exclusions that
# name their variants); the grid's cells and the figures follow, on the jobs the study keeps
SECTION_CHECKS = (_check_models, _check_tasks, _check_resources, _check_presses, _check_searches, _check_exclude,
                  _check_compare, _check_fetch)


def load(path: str | Path, preflight: bool = False) -> dict:
    """The validated config of a study file (`kvstudy status`; `kvstudy validate` runs the preflight after it)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "expected a mapping at the top level")
    if "__use_yte__" in raw:  # Snakemake renders such a file as a YTE template: it runs the Python in it
        raise ConfigError("__use_yte__", f"{path} is a YTE template, code that Snakemake runs when it "
                          "reads the file; a kvstudy study is plain YAML (read the template, render it yourself, run "
                          "the rendered file)")
    return validate(raw, preflight=preflight)
