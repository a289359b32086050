"""Accuracy of the built-in tiny model with the full cache, by context length and task.

    python bench/tiny_accuracy.py [--lengths 256 512 1024 2048 4096] [--n 100]
"""

from __future__ import annotations

import argparse

import torch

from kvstudy.evaluate import run_job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--model", default="builtin:tiny-retrieval")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tasks = {"niah": {}, "kv_retrieval": {"n_pairs": 32}}
    print("| task | " + " | ".join(str(n) for n in a.lengths) + " |")
    print("|---|" + "---|" * len(a.lengths))
    for task, params in tasks.items():
        cells = []
        for length in a.lengths:
            job = {
                "model": "tiny", "model_path": a.model, "dtype": "float32", "task": task, "task_kind": task,
                "task_params": {"n_samples": a.n, **params}, "length": length, "seed": 12345, "press": "no_press",
                "method": "no_press", "params": {}, "compression_ratio": 0.0,
            }
            cells.append(f"{run_job(job, threads=a.threads, device='cpu')['quality']['score']:.1%}")
        print(f"| {task} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
