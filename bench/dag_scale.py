"""DAG build time of our Snakefile at paper scale, against a bare `expand` Snakefile of the same size.

    python bench/dag_scale.py [--sizes 1000 5000 10000 20000] [--repeat 1]

For each size N, a synthetic study of N eval jobs (1 model x 2 tasks x 10 lengths x N/20 press variants) is
dry-run (`snakemake -n figures/all`) twice in a fresh copy of the workflow: once with no results ("build": the
whole DAG is scheduled) and once with every output present ("no-op": all raw results, tables and figures exist,
so nothing is to do). The bare Snakefile has the same eval jobs written as one `expand` into an aggregate rule,
with the same two situations. Prints a table of seconds and the ratio ours / bare (goal: <= 1.3).

Where a SLURM client is installed but no controller answers, the SLURM executor plugin's import waits 10 s in
`scontrol show config` in every snakemake process; the bench puts a failing `scontrol` first on PATH so that
constant does not hide the DAG's cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
N_TASKS, N_LENGTHS = 2, 10

BARE = """\
MODELS = ["tiny"]
TASKS = {tasks!r}
LENGTHS = {lengths!r}
PRESSES = {presses!r}

rule all:
    input: "figures/all"

rule eval:
    output: "results/raw/{{model}}/{{task}}/{{length}}/{{press}}/seed{{seed}}.json"
    shell: "touch {{output}}"

rule aggregate:
    input: expand("results/raw/{{model}}/{{task}}/{{length}}/{{press}}/seed0.json", model=MODELS, task=TASKS, \
length=LENGTHS, press=PRESSES)
    output: "results/tables/results.csv"
    shell: "touch {{output}}"

rule manifest:
    input: "results/tables/results.csv"
    output: "figures/all"
    shell: "touch {{output}}"
"""


def study(n_jobs: int) -> dict:
    n_variants = n_jobs // (N_TASKS * N_LENGTHS)
    return {
        "study": f"dag{n_jobs}",
        "models": {"tiny": {"path": "builtin:tiny-retrieval"}},
        "tasks": {"niah": {"n_samples": 4}, "kv_retrieval": {"n_samples": 4}},
        "lengths": [1024 + 64 * i for i in range(N_LENGTHS)],
        # one press, its `seed` parameter swept: n_variants distinct variants, each a distinct slug
        "presses": [{"method": "random", "compression_ratio": 0.5, "seed": list(range(n_variants))}],
        "figures": ["score_vs_ratio", "pareto_memory", "niah_heatmap"],
    }


def dry_run(wd: Path, *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one dry run; CPU time is the steadier measure on a shared machine."""
    r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "all", *args], cwd=wd,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def touch_all(wd: Path, raw: list[str], later: list[str]) -> None:
    """Every raw result, then (a second later, so they are newer) every downstream output."""
    for p in raw:
        path = wd / p
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    time.sleep(1.1)
    for p in later:
        path = wd / p
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def ours(wd: Path, n: int) -> tuple[tuple, tuple, int]:
    from kvstudy.config import validate
    from kvstudy.grid import jobs, raw_path

    for name in ("Snakefile",):
        shutil.copy(ROOT / name, wd / name)
    shutil.copytree(ROOT / "workflow", wd / "workflow")
    shutil.copytree(ROOT / "envs", wd / "envs")
    cfg = study(n)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    raw = [raw_path(j) for j in jobs(validate(cfg))]
    build = dry_run(wd)
    tables = [f"results/tables/{t}.csv" for t in ("results", "samples", "performance", "memory_usage", "throughput")]
    figures = [f"figures/{f}.{e}" for f in cfg["figures"] for e in ("pdf", "png")]
    touch_all(wd, raw + ["results/raw/.missing"], tables)
    time.sleep(1.1)
    touch_all(wd, [], ["results/analysis/pareto.csv", "results/analysis/significance.csv"])
    time.sleep(1.1)
    touch_all(wd, [], figures)
    time.sleep(1.1)
    touch_all(wd, [], ["figures/all"])
    noop = dry_run(wd)
    return build, noop, len(raw)


def bare(wd: Path, n: int) -> tuple[tuple, tuple]:
    cfg = study(n)
    presses = [f"random-cr0.50-s{i}" for i in range(n // (N_TASKS * N_LENGTHS))]
    (wd / "Snakefile").write_text(BARE.format(tasks=list(cfg["tasks"]), lengths=cfg["lengths"], presses=presses))
    raw = [f"results/raw/tiny/{t}/{ln}/{p}/seed0.json" for t in cfg["tasks"] for ln in cfg["lengths"] for p in presses]
    build = dry_run(wd)
    touch_all(wd, raw, ["results/tables/results.csv"])
    time.sleep(1.1)
    touch_all(wd, [], ["figures/all"])
    noop = dry_run(wd)
    return build, noop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    a = ap.parse_args()
    shim = Path(tempfile.mkdtemp())
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    os.environ["PATH"] = os.pathsep.join([str(shim), os.path.dirname(sys.executable), os.environ["PATH"]])
    rows = []
    for n in a.sizes:
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            ob, on, jobs = ours(Path(d1), n)
            bb, bn = bare(Path(d2), n)
        rows.append((jobs, bb, ob, bn, on))
        print(f"done {jobs} jobs", file=sys.stderr, flush=True)
    print("seconds as wall / CPU (user+sys); ratio = ours / bare")
    print(f"{'eval jobs':>9} | {'bare build':>11} | {'ours build':>11} | {'ratio':>11} | "
          f"{'bare no-op':>11} | {'ours no-op':>11} | {'ratio':>11}")
    for jobs, bb, ob, bn, on in rows:
        cells = [f"{x[0]:.1f} / {x[1]:.1f}" for x in (bb, ob)] + [f"{ob[0] / bb[0]:.2f} / {ob[1] / bb[1]:.2f}"]
        cells += [f"{x[0]:.1f} / {x[1]:.1f}" for x in (bn, on)] + [f"{on[0] / bn[0]:.2f} / {on[1] / bn[1]:.2f}"]
        print(f"{jobs:>9} | " + " | ".join(f"{c:>11}" for c in cells))


if __name__ == "__main__":
    main()
