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

The package, bottom up: `constraints` (the safe evaluator of `constraints:`), `space` (settings and candidates of a
search block, its checks), `study` (the study's searches, trials and choice paths), `select` (trials -> the chosen
candidate), `report` (the summary tables). Variant names and the tuned variants of a searched entry are
`kvstudy.variants`; the trial status of `kvstudy status` is `kvstudy.status.render_trial_status`.
"""

from __future__ import annotations

# the public names, re-exported: `from kvstudy import tuning; tuning.tune(...)` (nothing below imports this)
from kvstudy.tuning.constraints import MAX_EXPONENT, SearchError, parse_constraint, satisfies
from kvstudy.tuning.space import DEFAULTS, MAX_DRAWS, MAX_GRID, MODES, candidates, check_search, check_tasks, settings
from kvstudy.tuning.study import (
    CHOICE_GLOBAL, CHOICE_TASK, DEV_LOG, DEV_RAW, DEV_SEED_OFFSET, apply_choice, choice_path, dev_raw_path,
    dev_seed, find_search, searches, trial_jobs, tune_study,
)
from kvstudy.tuning.select import as_number, candidate_table, higher_is_better, objective_of, read_trials, select, tune
from kvstudy.tuning.report import summary, write_summary
from kvstudy.variants import fixed_combos, tuned_variants

__all__ = [
    "CHOICE_GLOBAL", "CHOICE_TASK", "DEFAULTS", "DEV_LOG", "DEV_RAW", "DEV_SEED_OFFSET", "MAX_DRAWS",
    "MAX_EXPONENT", "MAX_GRID", "MODES", "SearchError", "apply_choice", "as_number", "candidate_table",
    "candidates", "check_search", "check_tasks", "choice_path", "dev_raw_path", "dev_seed", "find_search",
    "fixed_combos", "higher_is_better", "objective_of", "parse_constraint", "read_trials", "satisfies", "searches",
    "select", "settings", "summary", "trial_jobs", "tune", "tune_study", "tuned_variants", "write_summary",
]
