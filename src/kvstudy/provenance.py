"""The provenance page of the Snakemake report (what `snakemake --report` does not record on its own).

One self-contained HTML file: the git commit (and whether the tree was dirty) of the checkout that built it, the
resolved study config, the resolved versions of the packages the pipeline imports, what the raw results say
about where they ran (devices, hosts, CUDA, library versions, kvstudy commits, the commits of the models and data
they read: `revision model:org/name`), and a time summary of the jobs
(from Snakemake's `benchmarks/` files where present, else the jobs' own `total_seconds`).
"""

from __future__ import annotations

import datetime
import html
import json
import os
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from kvstudy.aggregate import write_text_atomic

PACKAGES = ("kvstudy", "snakemake", "torch", "transformers", "kvpress", "datasets", "numpy", "pandas", "scipy",
            "statsmodels", "matplotlib", "seaborn", "jsonschema", "pyyaml")
RAW_FIELDS = ("device", "device_name", "cuda", "host", "python", "torch", "transformers", "kvpress",
              "kvstudy_version", "git_commit")


def git_state(root: Path) -> dict:
    """Commit and dirtiness of the checkout at `root`; "unknown" outside git."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown (not a git checkout)", "dirty": None}
        status = run("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (git not available)", "dirty": None}


def package_versions(packages=PACKAGES) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def raw_provenance(raw_paths: list[Path]) -> pd.DataFrame:
    """(field, value, jobs): how many raw results report each distinct value of each provenance field."""
    counts: Counter = Counter()
    for path in raw_paths:
        try:
            with open(path) as fh:
                prov = (json.load(fh).get("provenance") or {})
        except (OSError, ValueError):
            continue
        for key in RAW_FIELDS:
            counts[(key, str(prov.get(key)))] += 1
        for key, commit in (prov.get("revisions") or {}).items():  # model / dataset / data commits the job read
            counts[(f"revision {key}", commit)] += 1
    rows = [{"field": k, "value": v, "jobs": n} for (k, v), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["field", "value", "jobs"])


def job_times(results: pd.DataFrame | None, benchmarks: Path | None) -> tuple[pd.DataFrame, str]:
    """Per-job wall time summary by (rule, model, task) from benchmark TSVs (`s` column) or results.csv."""
    rows = []
    if benchmarks is not None and Path(benchmarks).is_dir():
        for tsv in sorted(Path(benchmarks).rglob("*.tsv")):
            parts = tsv.relative_to(benchmarks).parts  # eval/{model}/{task}/{length}/{press}/seed{seed}.tsv
            try:
                seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
            except (ValueError, KeyError, IndexError, pd.errors.EmptyDataError):
                continue
            rows.append({"rule": parts[0], "model": parts[1] if len(parts) > 3 else "",
                         "task": parts[2] if len(parts) > 3 else "", "seconds": seconds})
    source = "Snakemake benchmark files (benchmarks/)"
    if not rows and results is not None and "total_seconds" in results.columns:
        ok = results.dropna(subset=["total_seconds"])
        rows = [{"rule": "eval", "model": m, "task": t, "seconds": float(s)}
                for m, t, s in zip(ok["model"], ok["task"], ok["total_seconds"])]
        source = "results.csv total_seconds (no benchmark files found)"
    frame = pd.DataFrame(rows, columns=["rule", "model", "task", "seconds"])
    if frame.empty:
        return pd.DataFrame(), "no timing found"
    summary = frame.groupby(["rule", "model", "task"])["seconds"].agg(
        jobs="size", total="sum", mean="mean", median="median", max="max").reset_index()
    total = frame.groupby("rule")["seconds"].agg(jobs="size", total="sum", mean="mean", median="median",
                                                 max="max").reset_index().assign(model="(all)", task="(all)")
    return pd.concat([total, summary], ignore_index=True)[list(summary.columns)].round(3), source


def _table(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return "<p><em>none</em></p>"
    return frame.to_html(index=False, border=0, classes="prov", na_rep="")


def render(config: dict, root: Path, results: pd.DataFrame | None, raw_paths: list[Path],
           benchmarks: Path | None) -> str:
    git = git_state(root)
    code = git_state(Path(__file__).resolve().parent)  # the kvstudy code that ran (may differ from the workdir)
    versions = pd.DataFrame(sorted(package_versions().items()), columns=["package", "version"])
    seen = raw_provenance(raw_paths)
    times, source = job_times(results, benchmarks)
    status = (results["status"].value_counts().rename_axis("status").reset_index(name="jobs")
              if results is not None and "status" in results.columns else pd.DataFrame())
    dirty = {True: " (working tree had uncommitted changes)", False: " (clean)", None: ""}[git["dirty"]]
    source_dirty = {True: " (uncommitted changes)", False: " (clean)", None: ""}[code["dirty"]]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    body = [
        f"<h1>Provenance of study {html.escape(str(config.get('study', '')))}</h1>",
        f"<p>Built {now} on {html.escape(os.uname().nodename)}.</p>",
        "<h2>Git commit</h2>", f"<p>Working directory: <code>{html.escape(git['commit'])}</code>{dirty}</p>",
        f"<p>kvstudy source ({html.escape(str(Path(__file__).resolve().parent))}): "
        f"<code>{html.escape(code['commit'])}</code>"
        f"{source_dirty}</p>",
        "<h2>Job status</h2>", _table(status),
        "<h2>Devices, hosts and versions seen in the raw results</h2>",
        f"<p>{len(raw_paths)} raw results read; each row: a value and how many jobs report it.</p>", _table(seen),
        "<h2>Resolved package versions (analysis environment)</h2>", _table(versions),
        f"<h2>Job times</h2><p>Seconds per job, from {html.escape(source)}.</p>", _table(times),
        "<h2>Resolved config</h2>",
        f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))}</pre>",
    ]
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:70em}table.prov{border-collapse:collapse;"
             "font-size:0.9em}table.prov td,table.prov th{padding:2px 8px;border-bottom:1px solid #ddd;"
             "text-align:left}pre{background:#f6f6f6;padding:0.8em;font-size:0.85em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>kvstudy provenance</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_provenance(config: dict, out: Path, root: Path = Path("."), results_csv: Path | None = None,
                     raw_paths: list[Path] = (), benchmarks: Path | None = None) -> Path:
    results = None
    if results_csv is not None and Path(results_csv).exists():
        results = pd.read_csv(results_csv, dtype={c: str for c in ("model", "task", "press", "status")})
    text = render(config, Path(root), results, [Path(p) for p in raw_paths if Path(p).exists()], benchmarks)
    out = Path(out)
    write_text_atomic(text, out)
    return out
