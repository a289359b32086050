"""The default study (config.yaml) with grouped eval jobs against one-variant jobs, in one run on this machine.

    python bench/shared_prefill.py [--cores 2] [--groups entry variant] [--keep DIR]

For each `eval.group` it runs `snakemake figures/all` from scratch in a fresh copy of the workflow and prints: the
eval jobs Snakemake ran, the wall time of the whole run, the prefills the eval jobs made (read from the raw results:
a sample prefilled once for k variants counts once) and, per sample of a cell, the prefills made against the
prefill classes of its variants (attention implementation x query-aware prefix, false, true or "prompt": the goal is
one prefill per class), and the CPU time of the whole run (snakemake and every job: steadier than wall time on a
shared machine). Then whether every grouped result has the same predictions, scores and KV bytes as its one-variant
result.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(wd: Path, group: str, cores: int) -> tuple[float, float]:
    for name in ("Snakefile",):
        shutil.copy(ROOT / name, wd / name)
    for name in ("workflow", "envs"):
        shutil.copytree(ROOT / name, wd / name, dirs_exist_ok=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["eval"] = {**config.get("eval", {}), "group": group}
    (wd / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "figures/all"], cwd=wd,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"snakemake failed ({group}):\n{p.stderr[-3000:]}")
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    (wd / "snakemake.log").write_text(p.stdout + p.stderr)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def raw_results(wd: Path) -> dict[str, dict]:
    return {str(p.relative_to(wd)): json.loads(p.read_text()) for p in (wd / "results/raw").rglob("seed*.json")}


def prefills(results: dict[str, dict]) -> tuple[float, float, float]:
    """(prefills made, their mean per sample and cell, mean prefill classes per cell)."""
    made = defaultdict(float)  # (cell, sample) -> prefills
    classes = defaultdict(set)  # cell -> prefill classes
    for raw in results.values():
        job = raw["job"]
        cell = (job["model"], job["task"], job["length"], job["seed"])
        classes[cell].add((raw["efficiency"]["attn_implementation"], job["params"].get("query_aware") or False))
        for s in raw["samples"]:
            made[cell, s["id"]] += 1 / s["prefill_shared_by"]
    n = sum(made.values())
    return n, n / len(made), sum(len(c) for c in classes.values()) / len(classes)


def identical(a: dict[str, dict], b: dict[str, dict]) -> bool:
    keys = ("prediction", "score", "kv_bytes", "kv_tokens", "kv_bytes_final")
    return a.keys() == b.keys() and all(
        [[s[k] for k in keys] for s in a[p]["samples"]] == [[s[k] for k in keys] for s in b[p]["samples"]] for p in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--groups", nargs="+", default=["entry", "variant"], choices=["variant", "entry", "cell"])
    ap.add_argument("--keep", type=Path, help="run in DIR/<group> and keep the outputs")
    a = ap.parse_args()
    base = a.keep or Path(tempfile.mkdtemp(prefix="kvstudy-shared-"))
    rows, results = [], {}
    for group in a.groups:
        wd = base / group
        wd.mkdir(parents=True, exist_ok=True)
        wall, cpu = run(wd, group, a.cores)
        results[group] = raw_results(wd)
        log = (wd / "snakemake.log").read_text()
        eval_jobs = sum(int(n) for name, n in (line.split() for line in log.splitlines()
                                               if line.startswith("eval") and len(line.split()) == 2))
        made, per_sample, classes = prefills(results[group])
        rows.append((group, eval_jobs, len(results[group]), wall, cpu, made, per_sample, classes))
        print(f"done {group}: {wall:.0f} s", file=sys.stderr, flush=True)
    print(f"default study (config.yaml), figures/all from scratch, {a.cores} cores\n")
    print("| eval.group | eval jobs | raw results | figures/all wall | CPU (user+sys) | prefills | "
          "prefills per sample and cell | prefill classes per cell |\n|---|---|---|---|---|---|---|---|")
    for g, jobs, n, wall, cpu, made, per_sample, classes in rows:
        print(f"| {g} | {jobs} | {n} | {wall:.0f} s | {cpu:.0f} s | {made:.0f} | {per_sample:.2f} | {classes:.2f} |")
    if "variant" in results:
        for g in results:
            if g != "variant":
                same = identical(results[g], results["variant"])
                print(f"\n{g} vs variant: predictions, scores and KV bytes identical: {'yes' if same else 'NO'}")
    if not a.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
