"""The study config, raw result and timing result schemas, shipped inside the package (package data), so that an
installed kvstudy (not only a checkout) validates a study and checks its results. One source of truth: nothing else
holds a copy."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

DIR = Path(__file__).resolve().parent
CONFIG = DIR / "config.schema.yaml"
RESULT = DIR / "result.schema.json"
TIMING = DIR / "timing.schema.json"


def load(path: Path) -> dict:
    """One of the schemas above, parsed (YAML with libyaml's loader where present: the config schema is read in
    every snakemake process)."""
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def config() -> dict:
    """The study config schema, parsed once per process (read it, never change it)."""
    return load(CONFIG)


def search_defaults() -> dict:
    """The `default:` of each setting of a press entry's `search:` block (seed, mode, objective, penalty)."""
    block = config()["properties"]["presses"]["items"]["properties"]["search"]["properties"]
    return {k: v["default"] for k, v in block.items() if "default" in v}


def job_defaults() -> dict:
    """What a job made by hand (`kvstudy eval --job`) runs with where it leaves them out, as a study's job would:
    its model entry's defaults (dtype, attn_implementation) and the study's default stop words."""
    block = config()["properties"]["models"]["additionalProperties"]["properties"]
    stops = config()["properties"]["eval"]["properties"]["stop_words"]["default"]
    return {**{k: v["default"] for k, v in block.items() if "default" in v}, "stop_words": stops}
