"""`kvstudy status CONFIG`: where every eval job of a study stands, without running snakemake.

A job is
- `done`: its raw result says ok; `oom`: it says oom; `failed`: it says failed (the job raised, kvstudy.failed);
- `running`: Snakemake has started it (an incomplete marker for its raw result) and a snakemake holds the
  directory's locks (started may mean queued on SLURM);
- `interrupted`: it was started or has a log, yet no snakemake is running and it has no finished result (or
  Snakemake still marks it incomplete): the run stopped under it; the next run (with `--rerun-incomplete`, as the
  profiles set) computes it again;
- `missing`: no result and not started (a running snakemake may have it queued);
- `invalid`: a file is there that is not this job's valid result (unreadable, off the schema or the contract, or
  another job's: kvstudy.rawcheck); `render` names each with why. The next snakemake run sets it aside under
  `results/rejected/` and computes the job again (kvstudy.rawguard).

Snakemake 9's file persistence (the default) keeps an incomplete marker per output under
`.snakemake/incomplete/` (the path, urlsafe-base64 encoded, cut into `@`-prefixed directories where it is longer
than a file name may be) and, while it runs, the paths it reads and writes in `.snakemake/locks/*.lock`. A snakemake
killed with SIGKILL leaves its locks behind (`snakemake --unlock` clears them); status then reads as running.

Printed as one row per model x task x length x seed with one letter per press variant, then totals; a study with
searches (kvstudy.tuning) gets one line per search for its dev-split trials and choices (`render_trial_status`).
`retry_failed` removes the failed records (their logs stay) so that the next snakemake run computes exactly them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections import Counter
from pathlib import Path

from kvstudy.grid import LOG, jobs, raw_path, variants
from kvstudy.rawcheck import RawResultError, load, read
from kvstudy.tuning.space import settings
from kvstudy.tuning.study import DEV_LOG, choice_path, dev_raw_path, searches, trial_jobs

LETTER = {"done": ".", "oom": "O", "failed": "F", "running": "R", "interrupted": "I", "missing": "-", "invalid": "X"}
SNAKEMAKE_DIR = ".snakemake"


def incomplete_outputs(root: Path) -> set[str]:
    """Outputs Snakemake marks incomplete (started, not finished) under ROOT/.snakemake/incomplete."""
    base = Path(root) / SNAKEMAKE_DIR / "incomplete"
    out = set()
    for dirpath, _, files in os.walk(base):
        rel = Path(dirpath).relative_to(base).parts
        for name in files:
            encoded = "".join(p[1:] if p.startswith("@") else p for p in (*rel, name))
            try:
                out.add(base64.urlsafe_b64decode(encoded.encode()).decode())
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue  # e.g. "migration_underway"
    return out


def locked_outputs(root: Path) -> set[str]:
    """Outputs a running snakemake has locked (ROOT/.snakemake/locks/*.output.lock)."""
    out = set()
    for lock in (Path(root) / SNAKEMAKE_DIR / "locks").glob("*.output.lock"):
        try:
            out.update(line.strip() for line in lock.read_text().splitlines() if line.strip())
        except OSError:
            continue
    return out


def job_state(job: Job, root: Path, incomplete: set[str] = frozenset(), locked: set[str] = frozenset(),
              problems: dict[str, str] | None = None) -> str:
    """The job's state; an invalid result's reason goes into `problems` (raw path -> why)."""
    path = raw_path(job)
    if path in incomplete:
        return "running" if path in locked else "interrupted"
    raw = Path(root) / path
    if raw.exists():
        try:
            status = read(raw, job)["status"]
        except RawResultError as e:
            if problems is not None:
                problems[path] = e.reason
            return "invalid"
        return {"oom": "oom", "failed": "failed"}.get(status, "done")
    return "interrupted" if (Path(root) / LOG.format(**vars(job))).exists() and path not in locked else "missing"


def grid_status(config: dict, root: Path = Path("."), problems: dict[str, str] | None = None) -> dict[str, str]:
    """raw path -> state, for every job of the study; why each invalid result is invalid goes into `problems`."""
    incomplete, locked = incomplete_outputs(root), locked_outputs(root)
    return {raw_path(j): job_state(j, root, incomplete, locked, problems) for j in jobs(config)}


def render_problems(problems: dict[str, str]) -> str:
    """One line per invalid raw result: its path and why."""
    return "\n".join(f"invalid raw result {path}: {why} (the next snakemake run sets it aside under results/rejected/ "
                     "and computes it again)" for path, why in problems.items())


def render(config: dict, states: dict[str, str]) -> str:
    presses = [v["press"] for v in variants(config)]
    width = max(len(p) for p in presses)
    lines = [f"{' ' * 40} " + " ".join(str(i % 10) for i in range(len(presses)))]
    rows: dict[tuple, dict[str, str]] = {}
    for job in jobs(config):
        key = (job.model, job.task, job.length, job.seed)
        rows.setdefault(key, {})[job.press] = LETTER[states[raw_path(job)]]
    for (model, task, length, seed), letters in rows.items():  # " " where a study excludes a combination
        lines.append(f"{f'{model}/{task}/{length}/seed{seed}':40s} " + " ".join(letters.get(p, " ") for p in presses))
    lines.append("")
    lines += [f"{i % 10} {p:{width}s}" for i, p in enumerate(presses)]
    counts = Counter(states.values())
    lines.append("")
    lines.append("  ".join(f"{s}={counts.get(s, 0)} ({LETTER[s]})" for s in LETTER) + f"  total={len(states)}")
    return "\n".join(lines)


def render_trial_status(config: dict, root: Path = Path(".")) -> str:
    """One line per search: its trials done / oom / failed (a log, no result) / missing / invalid (a file that is
    not a readable result: kvstudy.rawcheck.load; the Snakefile checks trial results in full before `tune` reads
    them), and its choices made."""
    lines = ["tuning trials (dev split):"]
    for s in searches(config):
        counts = {"done": 0, "oom": 0, "failed": 0, "missing": 0, "invalid": 0}
        for job in trial_jobs(config, s):
            raw = Path(root) / dev_raw_path(job)
            if raw.exists():
                try:
                    status = load(raw).get("status")
                    if status not in ("ok", "oom", "failed"):
                        raise RawResultError(raw, f"status {status!r} is not ok, oom or failed")
                except RawResultError as e:
                    lines.append(f"  invalid trial result {e}")
                    counts["invalid"] += 1
                    continue
                counts["oom" if status == "oom" else "done"] += 1
            else:
                counts["failed" if (Path(root) / DEV_LOG.format(**vars(job))).exists() else "missing"] += 1
        made = total = 0
        for model in config["models"]:
            for mode in settings(s["settings"])["mode"]:
                for task in [None] if mode == "global" else list(config["tasks"]):
                    total += 1
                    made += (Path(root) / choice_path(model, s["press"], mode, task)).exists()
        shown = "  ".join(f"{k}={v}" for k, v in counts.items() if v or k != "invalid")
        lines.append(f"  {s['press']:30s} {shown}  choices={made}/{total}")
    return "\n".join(lines)


def retry_failed(paths: list[str], root: Path = Path(".")) -> list[str]:
    """Remove the raw results among `paths` that say failed (their logs stay); returns the removed paths. Refuses
    while a snakemake holds the directory's locks: it may be writing those very files."""
    if locked_outputs(root):
        raise RuntimeError(f"status: a snakemake holds locks in {Path(root) / SNAKEMAKE_DIR / 'locks'}; retry when it "
                           "has finished (or run `snakemake --unlock` if it was killed)")
    removed = []
    for path in paths:
        raw = Path(root) / path
        try:
            failed = raw.exists() and json.loads(raw.read_text()).get("status") == "failed"
        except (OSError, ValueError):
            failed = False
        if failed:
            raw.unlink()
            removed.append(path)
    return removed
