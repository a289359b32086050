"""Time the default study (config.yaml) from scratch and as a no-op rerun; print what it found.

    python bench/default_study.py [--cores 2] [--keep DIR]

Runs in a fresh copy of the workflow so nothing in the checkout is touched. Prints a table: job count, wall time
of the full run and of the no-op rerun, and the score of every press variant per task and length.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def snakemake(wd: Path, cores: int, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), *args], cwd=wd, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="run here and keep the outputs")
    a = ap.parse_args()
    wd = a.keep or Path(tempfile.mkdtemp(prefix="kvstudy-bench-"))
    wd.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, wd / name)
    for name in ("workflow", "envs"):
        shutil.copytree(ROOT / name, wd / name, dirs_exist_ok=True)

    full = snakemake(wd, a.cores, "figures/all")
    noop = snakemake(wd, a.cores, "figures/all")
    res = pd.read_csv(wd / "results/tables/results.csv")
    print(f"| measure | value |\n|---|---|\n| eval jobs | {len(res)} |\n| figures/all from scratch | {full:.0f} s |"
          f"\n| no-op rerun | {noop:.1f} s |\n| mean eval job (total_seconds) | {res.total_seconds.mean():.2f} s |")
    print()
    table = res.pivot_table(index="press", columns=["task", "length"], values="score", sort=False)
    print(table.round(3).to_markdown())
    if not a.keep:
        shutil.rmtree(wd)


if __name__ == "__main__":
    main()
