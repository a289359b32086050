"""What the Snakefile does with raw results before it builds the DAG (in its main process, not for a report).

- **Bad results rerun.** Raw results that `aggregate` would read anew (newer than `results/tables/results.csv`, or
  all of them when there is no such table: a fresh clone with copied results) are checked (kvstudy.rawcheck:
  schema, contract, and the job the current config gives the path). A bad one is named in one line and moved to
  `results/rejected/<its path under results/raw>` with a `.reason` file next to it: it is missing, so this very run
  computes it again. `aggregate` checks every result again and fails naming the file, so nothing wrong reaches a
  table even when a result goes bad between the two checks.
- **Missing results rerun, and a dry run writes nothing.** Snakemake does not rerun a job because an intermediate
  file, a raw result, was deleted while everything downstream is up to date. `aggregate` therefore also reads a
  marker, `results/raw/.missing.N`: when results are missing, the DAG asks for `.missing.N+1`, which does not exist
  yet, so the rule that writes it (and with it `aggregate`, and the missing results it reads) is in the DAG; a dry
  run lists those jobs and writes nothing, a run writes the marker; the next run that runs jobs removes the older
  versions. The hyper-parameter search's trial markers work the same way (`.missing-trials/{model}/{press}/{task}.N`).
- **Leftovers of a killed run.** A job killed mid-write (kill -9, SLURM limits) leaves a temp file `.NAME.*.tmp*`
  next to its output; the next run removes those older than a minute under `results/` and `figures/`.

Nothing is moved or removed unless this snakemake will run jobs (not `-n`, `--touch`, `--unlock`, `--summary`,
`--dag`, ...; read from the command line as kvstudy.report reads report mode), and no result that another snakemake
has locked (it may be writing it; this one is about to fail on the lock) is moved.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from pathlib import Path

from kvstudy.rawcheck import RawResultError, read

RAW_ROOT = "results/raw"
REJECTED = "results/rejected"
REFERENCE = "results/tables/results.csv"  # what aggregate wrote last: results newer than it are read anew
TEMP = re.compile(r"^\..+\.tmp\d*$")  # evaluate.write_atomic / aggregate.write_*_atomic temp files
TEMP_ROOTS = ("results", "figures")
TEMP_AGE = 60  # seconds: a live write renames its temp file within a second
# snakemake command-line flags (argparse dests) under which it runs no job
NOT_RUNNING = ("dryrun", "touch", "unlock", "dag", "rulegraph", "filegraph", "d3dag", "summary", "detailed_summary",
               "list_changes", "list_input_changes", "list_params_changes", "list_untracked", "cleanup_metadata",
               "containerize", "generate_unit_tests", "archive", "delete_all_output", "delete_temp_output",
               "conda_cleanup_envs", "conda_create_envs_only", "list_conda_envs", "cleanup_shadow",
               "container_cleanup_images", "lint", "list_rules", "list_target_rules", "print_compilation")
_NOT_RUNNING_FLAGS = {"--" + d.replace("_", "-") for d in NOT_RUNNING} | {"--dry-run", "-n", "-t"}


def runs_jobs(argv: list[str] | None = None) -> bool:
    """Whether this snakemake will run jobs (not a dry run, a report, an unlock, a summary, a DAG print...): the
    arguments `snakemake.cli.args_to_api` parsed (found on the call stack), else `argv` (sys.argv)."""
    if argv is None:
        for info in inspect.stack(0):
            args = info.frame.f_locals.get("args") if info.function == "args_to_api" else None
            if args is not None and hasattr(args, "dryrun"):
                report = getattr(args, "report", None) and not getattr(args, "report_after_run", False)
                return not report and not any(getattr(args, d, None) for d in NOT_RUNNING)
        argv = sys.argv
    if any(a.split("=")[0] == "--report" for a in argv) and "--report-after-run" not in argv:
        return False
    for a in argv:
        if a.split("=")[0] in _NOT_RUNNING_FLAGS:
            return False
        if re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a):  # -n in a cluster of short flags (-np)
            return False
    return True


def locked_paths(root: Path = Path(".")) -> set[str]:
    """The paths a snakemake has locked (or, killed, left locked) in this directory (.snakemake/locks/*.lock list
    them one per line, as Snakemake sees them)."""
    out = set()
    for lock in (Path(root) / ".snakemake" / "locks").glob("*.lock"):
        try:
            out.update(line.strip() for line in lock.read_text().splitlines() if line.strip())
        except OSError:
            continue
    return out


def check_results(jobs: dict, act: bool, locked: set[str] = frozenset(), reference: str = REFERENCE,
                  out=sys.stderr) -> set[str]:
    """Check the raw results of `jobs` (path -> the config's kvstudy.job.Job) that aggregate would read anew; set
    bad ones aside when `act` and no snakemake has them `locked` (else only name them). Returns the paths that are
    missing now (set-aside ones included)."""
    try:
        since = os.stat(reference).st_mtime
    except FileNotFoundError:
        since = None
    missing = set()
    for path, job in jobs.items():
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            missing.add(path)
            continue
        if since is not None and mtime <= since:
            continue
        try:
            read(path, job)
        except RawResultError as e:
            if act and path in locked:
                print(f"kvstudy: invalid raw result {e}; another snakemake has it locked: not set aside", file=out)
            elif act:
                dest = set_aside(path, e.reason)
                missing.add(path)
                print(f"kvstudy: invalid raw result {e}; set aside as {dest}, computed again", file=out)
            else:
                print(f"kvstudy: invalid raw result {e} (a run sets it aside and computes it again)", file=out)
    return missing


def set_aside(path: str, reason: str) -> str:
    """Move `path` to REJECTED (same place under it as under results/raw) with a `.reason` file; the destination."""
    rel = os.path.relpath(path, RAW_ROOT)
    dest = os.path.join(REJECTED, rel if not rel.startswith("..") else os.path.basename(path))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(path, dest)
    Path(dest + ".reason").write_text(f"{path}: {reason}\n")
    return dest


def clean_temp(roots=TEMP_ROOTS, age: float = TEMP_AGE) -> list[str]:
    """Remove the temp files of killed writes (older than `age` seconds) under `roots`; the paths removed."""
    now, removed = time.time(), []
    stack = [r for r in roots if os.path.isdir(r)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif TEMP.match(e.name) and now - e.stat(follow_symlinks=False).st_mtime > age:
                    os.unlink(e.path)
                    removed.append(e.path)
    return removed


class Markers:
    """Versioned markers (`BASE.N`): the path a rule's input takes, a new one whenever results are missing. With
    `prune`, versions older than the latest are removed (only the latest is ever an input)."""

    def __init__(self, prune: bool = False):
        self.prune = prune
        self._listed: dict[str, list[str]] = {}

    def path(self, base: str, missing) -> str:
        """BASE.N of the latest marker N, or BASE.N+1 (for the marker rule to write) when results are `missing` or
        there is none yet."""
        d, name = os.path.split(base)
        if d not in self._listed:
            self._listed[d] = os.listdir(d) if os.path.isdir(d) else []
        versions = sorted(int(f[len(name) + 1:]) for f in self._listed[d]
                          if f.startswith(name + ".") and f[len(name) + 1:].isdigit())
        latest = versions[-1] if versions else 0
        if self.prune:
            for n in versions[:-1]:
                os.unlink(f"{base}.{n}")
        return f"{base}.{latest + 1}" if missing or not latest else f"{base}.{latest}"
