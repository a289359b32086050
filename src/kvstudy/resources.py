"""Whether a study's eval jobs need a GPU of their own, decided in the Snakefile without importing torch.

An eval job takes a GPU when the study's `eval.device` is `cuda`, or `auto` on a machine that has one (the job
then picks CUDA, kvstudy.evaluate.pick_device). The local profile counts GPUs as a resource, so such jobs never
share one; jobs that run on the CPU request none and run as many at a time as there are cores. Importing torch
in every snakemake process costs seconds, so the machine is asked through the device files its driver creates
(NVIDIA `/dev/nvidia0`..., AMD ROCm `/dev/kfd`), and `CUDA_VISIBLE_DEVICES` set empty (or -1) hides them.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_gpu(dev: Path = Path("/dev"), environ=os.environ) -> bool:
    """A GPU torch would see: a driver device file, not hidden by CUDA_VISIBLE_DEVICES."""
    if environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    dev = Path(dev)
    return any(p.name[len("nvidia"):].isdigit() for p in dev.glob("nvidia*")) or (dev / "kfd").exists()


def eval_gpus(device: str, dev: Path = Path("/dev"), environ=os.environ) -> int:
    """GPUs one eval job needs: 1 for `cuda` (and `cuda:N`), 1 for `auto` on a machine with a GPU, else 0."""
    if str(device).startswith("cuda"):
        return 1
    return int(device == "auto" and has_gpu(dev, environ))
