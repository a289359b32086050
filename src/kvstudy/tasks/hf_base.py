"""Base of the tasks that read real data (hub id through `datasets`, or a local file of the same format)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.tasks.base import Task
from kvstudy.tasks.sources import load_records


@dataclass
class HFTask(Task):
    param_choices = {"truncation": ("middle", "left", "right")}

    n_samples: int = 100
    source: str = ""  # hub id (org/name) or local .jsonl / .json / .parquet / .csv file
    dataset_name: str = ""  # hub config name
    split: str = "test"
    revision: str = ""
    trust_remote_code: bool = False  # passed to load_dataset only when the study sets it
    shuffle: bool = False  # seeded choice of n_samples rows instead of the first n_samples
    truncation: str = "middle"  # middle | left | right: where the long field is cut to fit the length

    def records(self, seed: int, source: str | None = None, split: str | None = None) -> list[dict]:
        rows = load_records(source or self.source, self.dataset_name, split or self.split, self.revision,
                            self.trust_remote_code)
        if not rows:
            raise ValueError(f"source {source or self.source}: no rows")
        return rows

    def pick(self, rows: list, seed: int) -> list:
        if self.shuffle:
            idx = np.random.default_rng([seed, 31]).permutation(len(rows))[: self.n_samples]
            return [rows[i] for i in sorted(idx)]
        return rows[: self.n_samples]
