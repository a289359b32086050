"""`kvstudy status CONFIG`: where every eval job of a study stands, without running snakemake.

A job is `done` (its raw result says ok), `oom` (its raw result says oom), `failed` (a log but no result: the job
ran and died, or is running now), or `missing` (never started). Printed as one row per model x task x length
with one letter per press variant, then totals.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from kvstudy.grid import LOG, jobs, raw_path, variants

LETTER = {"done": ".", "oom": "O", "failed": "F", "missing": "-"}


def job_state(job: dict, root: Path) -> str:
    raw = root / raw_path(job)
    if raw.exists():
        with open(raw) as f:
            return "oom" if json.load(f).get("status") == "oom" else "done"
    return "failed" if (root / LOG.format(**job)).exists() else "missing"


def grid_status(config: dict, root: Path = Path(".")) -> dict[str, str]:
    """raw path -> state, for every job of the study."""
    return {raw_path(j): job_state(j, root) for j in jobs(config)}


def render(config: dict, states: dict[str, str]) -> str:
    presses = [v["press"] for v in variants(config)]
    width = max(len(p) for p in presses)
    lines = [f"{' ' * 40} " + " ".join(str(i % 10) for i in range(len(presses)))]
    rows: dict[tuple, list[str]] = {}
    for job in jobs(config):
        key = (job["model"], job["task"], job["length"], job["seed"])
        rows.setdefault(key, []).append(LETTER[states[raw_path(job)]])
    for (model, task, length, seed), letters in rows.items():
        lines.append(f"{f'{model}/{task}/{length}/seed{seed}':40s} " + " ".join(letters))
    lines.append("")
    lines += [f"{i % 10} {p:{width}s}" for i, p in enumerate(presses)]
    counts = Counter(states.values())
    lines.append("")
    lines.append("  ".join(f"{s}={counts.get(s, 0)} ({LETTER[s]})" for s in LETTER) + f"  total={len(states)}")
    return "\n".join(lines)
