"""What `snakemake --report` needs beyond Snakemake: that the report describes the study it was built from.

`figures/all` records the study's name and the sha256 of its resolved config (`config_digest`). When the Snakefile
is read to make a report, it compares them with the config it was given (`check_report_config`) and stops with one
line where they differ, e.g. a custom study built with `--configfile my.yaml` reported without it (the captions
would otherwise describe the default study while the figures are the custom one's). The captions then take the
study's name, models, tasks and presses from the config, and the job counts from what is present
(`present_summary`: results.csv), not from the grid the config asks for.

Snakemake 9 reads the Snakefile before it knows it will make a report (snakemake.api builds the workflow for the
DAG first), so `report_mode` reads the command line: the arguments `snakemake.cli.args_to_api` parsed (found on
the call stack), else `sys.argv`. `--report-after-run` runs the workflow first, which writes a new figures/all, so
it needs no check.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import sys
from collections import Counter
from pathlib import Path


def config_digest(config: dict) -> str:
    """sha256 of the resolved config as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def report_mode(argv: list[str] | None = None) -> bool:
    """True when this snakemake run makes a report without running the workflow (`--report`, no
    `--report-after-run`)."""
    if argv is None:
        for info in inspect.stack(0):
            args = info.frame.f_locals.get("args") if info.function == "args_to_api" else None
            if args is not None and hasattr(args, "report"):
                return bool(args.report) and not getattr(args, "report_after_run", False)
        argv = sys.argv
    report = any(a == "--report" or a.startswith("--report=") for a in argv)
    return report and "--report-after-run" not in argv


def check_report_config(config: dict, manifest: Path) -> str | None:
    """None when `manifest` (figures/all) was built from this config; else the one line to stop with."""
    from kvstudy.plots.manifest import read_study

    name = config.get("study", "?")
    if not Path(manifest).exists():
        return f"report: {manifest} does not exist: build study {name!r} first (snakemake ... figures/all)"
    built = read_study(manifest)
    digest = config_digest(config)
    if built.get("config_sha256") == digest:
        return None
    if not built:
        return (f"report: {manifest} records no study (built by an older kvstudy): rebuild it "
                "(snakemake ... figures/all) with the study's --configfile, then make the report")
    return (f"report: {manifest} was built from study {built.get('study', '?')!r} (config sha256 "
            f"{built.get('config_sha256', '?')[:12]}), not from this config (study {name!r}, {digest[:12]}): run "
            "snakemake --report with the --configfile that built it")


def present_summary(results_csv: Path) -> str:
    """The jobs behind the figures, counted in results.csv: how many, by status, and samples scored."""
    path = Path(results_csv)
    if not path.exists():
        return f"{path} is missing: no job is behind these figures yet."
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    status = Counter(r.get("status", "") for r in rows)
    samples = sum(int(float(r["n"])) for r in rows if r.get("status") == "ok" and r.get("n"))
    models, tasks = (len({r[k] for r in rows}) for k in ("model", "task"))
    presses = len({r["press"] for r in rows})
    lost = []
    if status.get("oom"):
        lost.append(f"{status['oom']} ran out of memory (drawn as OOM)")
    if status.get("failed"):
        lost.append(f"{status['failed']} failed (drawn as failed; errors in results.csv and the job logs)")
    return (f"{len(rows):,} eval jobs in results.csv ({models} model(s), {tasks} task(s), {presses} press "
            f"variant(s)): {status.get('ok', 0):,} ok with {samples:,} samples scored"
            + ("; " + "; ".join(lost) if lost else "") + ".")
