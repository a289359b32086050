"""Fuzz the study config: every key of the default study (config.yaml) and the end-to-end test study mutated in
type, range, presence, and with unknown keys beside it. Each mutation either still makes a valid study or is
refused by validation (before any job) with one line, `config error: ...`, that names the key."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import ROOT
from kvstudy.config import ConfigError, validate

STUDIES = {name: yaml.safe_load(path.read_text()) for name, path in (
    ("default", ROOT / "config.yaml"), ("e2e", ROOT / ".test" / "config.yaml"), ("tuning", ROOT / ".test" / "tuning.yaml"))}
# the e2e study with what the others lack: SLURM resources, exclude entries, seeds, eval settings
STUDIES["cluster"] = {**STUDIES["e2e"], "seeds": [0, 1], "exclude": [{"task": "niah", "length": 512}],
                      "eval": {"device": "cpu", "threads": 2, "stop_words": ["\n"]},
                      "resources": {"eval": {"mem_mb": 32000, "runtime": 120, "gpu": 1, "gpu_model": "h100",
                                             "slurm_partition": "gpu", "slurm_extra": "--exclusive"}}}
# (a list of the right type is a grid of values for a press parameter: its items are of the wrong type here)
WRONG_TYPE = {int: ["twelve", 2.5, ["x"], {"a": 1}, None], float: ["half", ["half"], None],
              bool: ["yes", 1, ["yes"]], str: [7, [7], {"a": 1}, None]}
# keys whose value is free-form (anything goes), and keys a study may leave out that validation fills in
FREE = {"config_overrides"}


def nodes(value, path=()):
    """(path, value) of every node below the top level: mapping keys and list items."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for k, v in items:
        yield (*path, k), v
        yield from nodes(v, (*path, k))


def where(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def named(path) -> str:
    """The key a refusal must name: the last mapping key of the path."""
    return next(str(p) for p in reversed(path) if not isinstance(p, int))


def mutated(config, path, value=None, remove=False):
    out = copy.deepcopy(config)
    node = out
    for p in path[:-1]:
        node = node[p]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def mutations(config):
    """(label, mutated config, whether it must be refused, the key a refusal names)."""
    for path, value in nodes(config):
        if any(p in FREE for p in path[:-1]):
            continue
        kind = type(value)
        for wrong in WRONG_TYPE.get(kind, []):
            yield f"{where(path)}={wrong!r}", mutated(config, path, wrong), path[-1] not in FREE, named(path)
        if kind in (int, float):
            for bad in (-1, 10**12):
                yield f"{where(path)}={bad}", mutated(config, path, kind(bad)), True, named(path)
            yield f"{where(path)}=0", mutated(config, path, kind(0)), False, named(path)
        if isinstance(path[-1], str):  # a refusal of a removal may name the key or the mapping it was in
            # (or a figure the smaller study can no longer draw)
            keys = ((named(path), named(path[:-1])) if len(path) > 1 else (named(path),)) + ("figures[",)
            yield f"-{where(path)}", mutated(config, path, remove=True), False, keys
        if isinstance(value, dict) and path[-1] not in FREE:
            yield f"{where(path)}+unknown", mutated(config, (*path, "zz_unknown"), 1), True, "zz_unknown"
    yield "+unknown", {**config, "zz_unknown": 1}, True, "zz_unknown"


CASES = [(study, *m) for study, config in STUDIES.items() for m in mutations(config)]


@pytest.mark.parametrize("study, label, config, must_fail, key", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_mutation_is_refused_in_one_line_naming_the_key(study, label, config, must_fail, key):
    try:
        validate(config)
    except ConfigError as e:
        message = str(e)
        assert message.startswith("config error: ") and "\n" not in message, message
        keys = key if isinstance(key, tuple) else (key,)
        assert any(k in message for k in keys), f"{label}: {message}"
        assert message == f"config error: {e.key}: {e.message}"  # the key is the error's own, not read from text
        assert re.fullmatch(r"\(top level\)|[\w.-]+(\[\d+\])*(\.[\w-]+(\[\d+\])*)*", e.key), e.key
        return
    assert not must_fail, f"{label}: accepted"


def test_the_fuzz_covers_every_kind_of_mutation():
    labels = [c[1] for c in CASES]
    assert len(CASES) > 300
    for words in ("n_pairs='twelve'", "n_pairs=-1", "lengths[0]=1000000000000", "-models", "presses[1]+unknown",
                  "eval+unknown", "tasks.niah.n_samples=2.5", "resources.eval.slurm_extra=7", "search.sample=-1",
                  "exclude[0].length='twelve'"):
        assert any(words in label for label in labels), words


def test_a_refused_study_stops_snakemake_before_any_job(tmp_path):
    """The Snakefile validates first: snakemake prints the one line and writes no result, log or marker."""
    import subprocess
    import sys

    from conftest import copy_workflow

    wd = copy_workflow(tmp_path)
    config = yaml.safe_load((wd / ".test" / "config.yaml").read_text())
    config["tasks"]["kv_retrieval"]["n_pairs"] = "twelve"
    (wd / "bad.yaml").write_text(yaml.safe_dump(config))
    p = subprocess.run([sys.executable, "-m", "snakemake", "figures/all", "--cores", "1", "--configfile", "bad.yaml"],
                       cwd=wd, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "config error: tasks.kv_retrieval.n_pairs: 'twelve' is not an integer" in p.stderr
    assert not (wd / "results").exists() and not (wd / "logs").exists()
