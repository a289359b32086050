from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = "builtin:tiny-retrieval"


@pytest.fixture(scope="session")
def tiny():
    """The shipped tiny model and its tokenizer, loaded once."""
    from kvstudy.models import load_model

    torch.set_num_threads(1)
    return load_model(TINY, "float32", "sdpa", "cpu")


@pytest.fixture
def study() -> dict:
    """A small valid study config (a fresh copy per test)."""
    return {
        "models": {"tiny": {"path": TINY}},
        "tasks": {"niah": {"n_samples": 4}, "kv": {"kind": "kv_retrieval", "n_pairs": 8}},
        "lengths": [256, 512],
        "presses": [
            {"method": "no_press"},
            {"method": "snapkv", "compression_ratio": [0.5, 0.9], "window_size": [16, 32]},
            {"method": "knorm", "compression_ratio": 0.5},
        ],
    }
