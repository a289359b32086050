"""Sub-score columns of results.csv and samples.csv: a quality measure beside `score`, one column each.

A raw result's `quality.sub_scores` holds the means of per-sample values stored under the same key in each sample:
a task's extra metrics (`Task.metrics`, e.g. QA's substring_exact_match, token_f1, rouge_l_f1, keyed by the
metric's name) and a judged task's sub-scores (helmet_cite). Every sub-score named like a registered metric gets a
column of that name; helmet_cite's citation recall and precision keep the columns they always had (`JUDGED`).
Sub-scores under other keys stay in the raw results. A column is empty for tasks without it.
"""

from __future__ import annotations

from kvstudy.metrics import METRICS

# results.csv / samples.csv column -> its key in quality.sub_scores and in each sample (helmet_cite's judge)
JUDGED = {"citation_recall": "citation_rec", "citation_precision": "citation_prec"}


def sub_score_columns(raws) -> dict[str, str]:
    """column -> key of every sub-score the raw results carry, in table order: the judged pair always (the
    contract's fixed columns), then the registered metrics found, sorted by name."""
    found = {k for raw in raws for k in ((raw.get("quality") or {}).get("sub_scores") or {})}
    return JUDGED | {name: name for name in sorted(found & METRICS.keys())}


def in_table(columns) -> list[str]:
    """The sub-score columns among a results.csv's `columns` (the judged pair and registered metrics' names)."""
    return [c for c in columns if c in JUDGED or c in METRICS]


def task_metrics(kind: str, params: dict) -> tuple[str, ...]:
    """The extra metrics a task entry (kind and its study parameters) scores, or () where it cannot be made here."""
    from kvstudy.tasks import TASKS

    try:
        return tuple(TASKS[kind](**params).metrics)
    except Exception:  # noqa: BLE001 -- config validation names a bad task; here it has no columns
        return ()
