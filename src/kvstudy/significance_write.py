"""samples.csv -> significance.csv: the paired tests per task (kvstudy.significance) and of the mean over tasks
(kvstudy.significance_mean, rows with task "mean"), and, if asked, the across-seed Welch table. Above both
modules: significance_mean builds on significance, so the writer of their joint table cannot live in either."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kvstudy.atomic import write_csv_atomic
from kvstudy.significance import read_samples, seed_significance, significance
from kvstudy.significance_mean import mean_significance


def write_significance(samples_csv: Path, out_csv: Path, baseline: str = "no_press",
                       seeds_csv: Path | None = None) -> None:
    """samples.csv -> significance.csv (paired, per seed: per task, then the mean over tasks as task "mean") and, if
    asked, the across-seed Welch table."""
    samples = read_samples(samples_csv)
    tables = [t for t in (significance(samples, baseline), mean_significance(samples, baseline)) if len(t)]
    write_csv_atomic(pd.concat(tables, ignore_index=True) if tables else significance(samples, baseline), out_csv)
    if seeds_csv is not None:
        write_csv_atomic(seed_significance(samples, baseline), seeds_csv)
