"""DAG build time of our Snakefile at paper scale, against a bare `expand` Snakefile of the same size.

    python bench/dag_scale.py [--sizes 1000 5000 10000 20000] [--repeat 3] [--groups variant entry]

For each size N, a synthetic study of N eval jobs (1 model x 2 tasks x 10 lengths x N/20 press variants, one press
entry) is dry-run, once per `eval.group` asked (`variant`: one Snakemake job per variant; `entry`, the default: one
job per cell running the entry's N/20 variants, 20 jobs of N/20 outputs each), (`snakemake -n figures/all`) in a fresh copy of the workflow: with no results ("build": the whole DAG is
scheduled) and with every output present ("no-op": all raw results, tables and figures exist and are up to date,
so nothing is to do). The bare Snakefile has the same eval jobs written as one `expand` into an aggregate rule,
in the same two situations. A third Snakefile, "bare+log", is the bare one whose eval rule also has the `log:` and
`benchmark:` every kvstudy eval job has (the foundation issue asks for both): it separates what Snakemake spends on
two more files per job from what kvstudy adds. Prints a table of seconds and the ratio ours / bare (goal: <= 1.3).

Each dry run is repeated `--repeat` times, the three Snakefiles taking turns, and the table gives the fastest of
each (as `timeit` does): on a shared machine a single run of the same DAG varies by 10% or more.

Where a SLURM client is installed but no controller answers, the SLURM executor plugin's import waits 10 s in
`scontrol show config` in every snakemake process; the bench puts a failing `scontrol` first on PATH so that
constant does not hide the DAG's cost. It also byte-compiles kvstudy first: Snakemake's own modules were compiled
when pip installed them, an editable kvstudy is compiled on first import, and where PYTHONDONTWRITEBYTECODE is set
(as on CI machines) every run would otherwise compile kvstudy's ~60 modules again.
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
    output: "results/raw/{{model}}/{{task}}/{{length}}/{{press}}/seed{{seed}}.json"{extra}
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


def study(n_jobs: int, group: str = "entry") -> dict:
    n_variants = n_jobs // (N_TASKS * N_LENGTHS)
    return {
        "eval": {"group": group},
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


def all_present(wd: Path) -> None:
    """Every output of the DAG exists and is up to date: create each file `--summary` lists, then let
    `snakemake --touch` give them modification times in DAG order."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--summary", "--cores", "1", "all"], cwd=wd, check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        path = wd / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    subprocess.run([sys.executable, "-m", "snakemake", "--touch", "--cores", "1", "all"], cwd=wd, check=True,
                   capture_output=True)


LOG_AND_BENCHMARK = (
    '\n    log: "logs/eval/{model}/{task}/{length}/{press}/seed{seed}.log"'
    '\n    benchmark: "benchmarks/eval/{model}/{task}/{length}/{press}/seed{seed}.tsv"'
)


def setup_ours(wd: Path, n: int, group: str) -> int:
    from kvstudy.config import validate
    from kvstudy.grid import jobs

    shutil.copy(ROOT / "Snakefile", wd / "Snakefile")
    shutil.copytree(ROOT / "workflow", wd / "workflow")
    shutil.copytree(ROOT / "envs", wd / "envs")
    cfg = study(n, group)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    return len(jobs(validate(cfg)))


def setup_bare(wd: Path, n: int, extra: str = "") -> None:
    cfg = study(n)
    presses = [f"random-cr0.50-s{i}" for i in range(n // (N_TASKS * N_LENGTHS))]
    (wd / "Snakefile").write_text(BARE.format(tasks=list(cfg["tasks"]), lengths=cfg["lengths"], presses=presses,
                                              extra=extra))


def measure(n: int, repeat: int, groups: list[str]) -> tuple[int, dict, dict]:
    """(eval jobs, {variant: fastest build (wall, cpu)}, {variant: fastest no-op (wall, cpu)})."""
    with tempfile.TemporaryDirectory() as d:
        dirs = {v: Path(d) / v.replace(":", "-") for v in ("bare", "bare+log", *[f"ours:{g}" for g in groups])}
        for wd in dirs.values():
            wd.mkdir()
        for g in groups:
            jobs = setup_ours(dirs[f"ours:{g}"], n, g)
        setup_bare(dirs["bare"], n)
        setup_bare(dirs["bare+log"], n, LOG_AND_BENCHMARK)
        fastest = lambda runs: min(runs, key=lambda r: r[1])  # noqa: E731  (by CPU time, the steadier one)
        build = {v: [] for v in dirs}
        for _ in range(repeat):
            for v, wd in dirs.items():
                build[v].append(dry_run(wd))
        for wd in dirs.values():
            all_present(wd)
        noop = {v: [] for v in dirs}
        for _ in range(repeat):
            for v, wd in dirs.items():
                noop[v].append(dry_run(wd))
    return jobs, {v: fastest(r) for v, r in build.items()}, {v: fastest(r) for v, r in noop.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    ap.add_argument("--repeat", type=int, default=3, help="dry runs per Snakefile and situation; the fastest counts")
    ap.add_argument("--groups", nargs="+", default=["variant", "entry"], choices=["variant", "entry", "cell"],
                    help="eval.group settings of ours to time")
    a = ap.parse_args()
    shim = Path(tempfile.mkdtemp())
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    os.environ["PATH"] = os.pathsep.join([str(shim), os.path.dirname(sys.executable), os.environ["PATH"]])
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "kvstudy")], check=True)
    rows = []
    for n in a.sizes:
        rows.append(measure(n, a.repeat, a.groups))
        print(f"done {rows[-1][0]} jobs", file=sys.stderr, flush=True)
    print(f"seconds as wall / CPU (user+sys), fastest of {a.repeat}; ratio = ours / bare (goal <= 1.3); "
          "bare+log = bare with eval's log: and benchmark:; ours:G = eval.group G")
    ours = [f"ours:{g}" for g in a.groups]
    for title, col in (("build (nothing present)", 1), ("no-op (everything present)", 2)):
        print(f"\n{title}")
        print("| eval jobs | bare | bare+log | " + " | ".join(ours) + " | "
              + " | ".join(f"{o} / bare" for o in ours) + " |")
        print("|---" * (3 + 2 * len(ours)) + "|")
        for row in rows:
            t = row[col]
            cells = [f"{t[v][0]:.1f} / {t[v][1]:.1f}" for v in ("bare", "bare+log", *ours)]
            cells += [f"{t[o][0] / t['bare'][0]:.2f} / {t[o][1] / t['bare'][1]:.2f}" for o in ours]
            print(f"| {row[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
