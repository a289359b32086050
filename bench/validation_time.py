"""Validation time of a paper-scale study with its tokenizers cached (issue 14: goal <= 30 s cold).

    python bench/validation_time.py [--study studies/helmet_reasoning.yaml] [--repeat 3]

`kvstudy validate` (schema, cell checks and the preflight: every model's config and tokenizer, every task x model
x length building its samples, every press x model) of the study in a fresh folder, with local stand-ins for its
hub models (tests/standins.py: a hub cache in HF_HUB_CACHE layout holding configs of each architecture and a
byte-level BPE tokenizer, offline) and its data files. "cold" is a fresh folder (no preflight cache), "warm" the
same command again (the preflight cached under .snakemake/kvstudy/preflight/). Each is repeated `--repeat` times in
fresh folders; the table gives min / median / max seconds. On a shared machine the median says more than any one
run; the tests check what validation says, never how long it takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from standins import fake_hub, hub_models, place_data


def one(study_path: Path) -> tuple[float, float]:
    text = study_path.read_text()
    study = yaml.safe_load(text)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fake_hub(tmp / "hub", hub_models(study))
        place_data(study, tmp)
        (tmp / "study.yaml").write_text(text)
        env = {**os.environ, "HF_HUB_CACHE": str(tmp / "hub"), "HF_HUB_OFFLINE": "1"}
        times = []
        for _ in range(2):  # cold, then warm
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "kvstudy.cli", "validate", "study.yaml"], cwd=tmp, env=env,
                               capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if p.returncode:
                sys.exit(p.stderr.strip().splitlines()[-1])
        return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=ROOT / "studies/helmet_reasoning.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = [one(args.study) for _ in range(args.repeat)]
    print(f"{args.study.name}: kvstudy validate with stand-ins, {args.repeat} fresh folders, {os.cpu_count()} cores")
    print(f"{'':6} {'min s':>7} {'median s':>9} {'max s':>7}")
    for name, xs in (("cold", [c for c, _ in runs]), ("warm", [w for _, w in runs])):
        print(f"{name:6} {min(xs):7.1f} {statistics.median(xs):9.1f} {max(xs):7.1f}")


if __name__ == "__main__":
    main()
