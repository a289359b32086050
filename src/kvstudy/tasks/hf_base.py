"""Base of the tasks that read real data (hub id through `datasets`, or a local file of the same format).

Every row a task reads is checked for the fields the task needs (`row_problem`): a row without its answer (null,
missing, empty) would otherwise become the reference "None" (which scores 0, or 1 for a prediction "None"). Such a
row is an error naming the task, the file and the row, or, with `bad_rows: skip`, left out and counted in the job's
log. Every row of the file is checked, not only those a job picks, so the preflight's first samples find them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from kvstudy.tasks import dev_split
from kvstudy.tasks.base import Task, TaskParamError
from kvstudy.tasks.sources import load_records


def answer_problem(row: dict, path: str) -> str | None:
    """Why the answer field `path` of `row` cannot be a reference (missing, null, empty, or a list of those)."""
    from kvstudy.tasks.prompt import get_field

    try:
        value = get_field(row, path)
    except (ValueError, TypeError, KeyError):
        return f"no field {path!r}"
    items = value if isinstance(value, list) else [value]
    if not items:
        return f"{path} is an empty list"
    for v in items:
        if v is None or (isinstance(v, str) and not v.strip()):
            return f"{path} is {'null' if v is None else 'empty'}" + (" in the list" if isinstance(value, list) else "")
    return None


def fields_problem(row: dict, *paths: str) -> str | None:
    """Why `row` lacks one of the fields `paths` (dotted, kvstudy.tasks.prompt.get_field), or holds null there."""
    from kvstudy.tasks.prompt import get_field

    for path in paths:
        try:
            value = get_field(row, path)
        except (ValueError, TypeError, KeyError):
            return f"no field {path!r}"
        if value is None:
            return f"{path} is null"
    return None


@dataclass
class HFTask(Task):
    param_choices = {"truncation": ("middle", "left", "right", "none"), "bad_rows": ("error", "skip")}

    n_samples: int = 100
    source: str = ""  # hub id (org/name) or local .jsonl / .json / .parquet / .csv file
    dataset_name: str = ""  # hub config name
    split: str = "test"
    revision: str = ""
    trust_remote_code: bool = False  # passed to load_dataset only when the study sets it
    shuffle: bool = False  # seeded choice of n_samples rows instead of the first n_samples
    # middle | left | right: where the long field is cut to fit the length; none: never cut (a longer input runs
    # whole, its real length in the result's context_tokens)
    truncation: str = "middle"
    bad_rows: str = "error"  # a row without what the task needs: error (naming it) | skip (left out, counted)
    # {fraction, by: context, seed: 0}: rows grouped by field `by` split into a test and a disjoint dev part
    # (kvstudy.tasks.dev_split); None: every seed reads every row, and a press search refuses the task
    dev_split: dict | None = None

    def __post_init__(self):
        super().__post_init__()
        if not self.source.strip():
            raise TaskParamError("source", "empty: give a hub id or a local file")
        self.dev_split = dev_split.check(self.dev_split)

    @classmethod
    def disjoint_dev(cls, params: dict) -> bool:
        return bool(params.get("dev_split"))

    def row_problem(self, row: dict) -> str | None:
        """Why `row` cannot make a sample of this task (a missing or null field the task reads), or None."""
        return None

    def records(self, seed: int, source: str | None = None, split: str | None = None) -> list[dict]:
        src = source or self.source
        rows = load_records(src, self.dataset_name, split or self.split, self.revision, self.trust_remote_code,
                            task=self.name)
        kept, skipped = [], []
        for n, r in enumerate(rows, 1):
            why = self.row_problem(r)
            if why is None:
                kept.append(r)
            elif self.bad_rows == "skip":
                skipped.append((n, why))
            else:
                raise ValueError(f"task {self.name}: source {src}: row {n}: {why} (fix the row, or set bad_rows: "
                                 "skip to leave such rows out)")
        if skipped:
            n, why = skipped[0]
            print(f"task {self.name}: source {src}: {len(skipped)} of {len(rows)} rows skipped (bad_rows: skip), "
                  f"e.g. row {n}: {why}", file=sys.stderr)
        if not kept:
            raise ValueError(f"task {self.name}: source {src}: no row left ({len(skipped)} skipped)")
        return kept

    def pick(self, rows: list, seed: int) -> list:
        """The rows of a job at `seed`: its part of the dev split (if any), then the first n_samples or a seeded
        choice of them."""
        rows = dev_split.part(rows, self.dev_split, seed, f"task {self.name}: source {self.source}")
        if self.shuffle:
            idx = np.random.default_rng([seed, 31]).permutation(len(rows))[: self.n_samples]
            return [rows[i] for i in sorted(idx)]
        return rows[: self.n_samples]
