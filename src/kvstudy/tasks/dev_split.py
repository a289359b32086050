"""A fixed dev/test split of a dataset's rows, so that a press search (kvstudy.tuning) can tune on rows the test
jobs never read.

A task entry on dataset rows sets `dev_split: {fraction: 0.3, by: context, seed: 0}`. Rows are grouped by the
value of field `by` (dotted, kvstudy.tasks.prompt.get_field): questions on one document fall on the same side, so
no dev trial reads a document a test job asks about. The groups are ordered by a sha256 of (seed, value), which
no process, platform or PYTHONHASHSEED changes, and the first round(fraction x groups) form the dev part; rows keep
their file order inside each part. Test seeds read the test part, tuning's dev seeds (>= DEV_SEED_OFFSET) the dev
part.
"""

from __future__ import annotations

import hashlib
import json

from kvstudy.tasks.base import DEV_SEED_OFFSET, TaskParamError

KEYS = {"fraction", "by", "seed"}


def check(value) -> dict | None:
    """The `dev_split` parameter with its defaults filled (by: context, seed: 0), or None when unset."""
    if value is None:
        return None
    if not isinstance(value, dict) or "fraction" not in value:
        raise TaskParamError("dev_split", f"{value!r} is not a mapping with a fraction (e.g. {{fraction: 0.3}})")
    unknown = sorted(set(value) - KEYS)
    if unknown:
        raise TaskParamError("dev_split", f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(KEYS))})")
    spec = {"fraction": value["fraction"], "by": value.get("by", "context"), "seed": value.get("seed", 0)}
    f = spec["fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
        raise TaskParamError("dev_split", f"fraction {f!r} is not a number strictly between 0 and 1")
    if not isinstance(spec["by"], str) or not spec["by"]:
        raise TaskParamError("dev_split", f"by {spec['by']!r} is not a field name")
    if isinstance(spec["seed"], bool) or not isinstance(spec["seed"], int):
        raise TaskParamError("dev_split", f"seed {spec['seed']!r} is not an integer")
    return spec


def group_key(row: dict, by: str, where: str) -> str:
    """The value of field `by` of `row` as text: what groups rows (a document's text)."""
    from kvstudy.tasks.prompt import get_field

    try:
        value = get_field(row, by)
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{where}: dev_split.by: a row has no field {by!r}") from None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def dev_groups(keys: list[str], spec: dict, where: str) -> set[str]:
    """The group keys of the dev part: the first round(fraction x groups) in sha256(seed, key) order."""
    groups = sorted(set(keys), key=lambda k: hashlib.sha256(f"{spec['seed']}\0{k}".encode()).hexdigest())
    n_dev = round(spec["fraction"] * len(groups))
    if not 0 < n_dev < len(groups):
        raise ValueError(f"{where}: dev_split: {len(groups)} group(s) by {spec['by']!r} at fraction "
                         f"{spec['fraction']} leave the {'dev' if n_dev == 0 else 'test'} part empty")
    return set(groups[:n_dev])


def part(rows: list[dict], spec: dict | None, seed: int, where: str) -> list[dict]:
    """The rows a job at `seed` reads: all of them without a split; else the dev part for a dev seed, the test part
    for a test seed."""
    if spec is None:
        return rows
    keys = [group_key(r, spec["by"], where) for r in rows]
    dev = dev_groups(keys, spec, where)
    want_dev = seed >= DEV_SEED_OFFSET
    return [r for r, k in zip(rows, keys) if (k in dev) == want_dev]
