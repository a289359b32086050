"""The shipped tiny model: what it is, that `train-tiny` is deterministic, and that it really retrieves."""

import json

import pytest
import torch

from kvstudy.evaluate import run_job
from kvstudy.models import BUILTIN_DIR, builtin_models, resolve
from kvstudy.models.train_tiny import train


def test_shipped_model_is_a_small_llama():
    d = BUILTIN_DIR / "tiny-retrieval"
    assert "tiny-retrieval" in builtin_models()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert sum(p.stat().st_size for p in d.iterdir()) < 5e6
    assert resolve("builtin:tiny-retrieval") == str(d)


def test_train_tiny_is_deterministic_for_a_seed(tmp_path):
    torch.set_num_threads(1)
    a, b, c = (tmp_path / n for n in "abc")
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        train(out, seed=seed, steps=3, max_length=64, log=lambda m: None)
    from safetensors.torch import load_file

    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("task, params", [("niah", {}), ("kv_retrieval", {"n_pairs": 32})])
def test_full_cache_retrieves_at_the_default_lengths(task, params):
    for length in (1024, 2048):
        job = {
            "model": "tiny", "model_path": "builtin:tiny-retrieval", "dtype": "float32", "task": task,
            "task_kind": task, "task_params": {"n_samples": 20, **params}, "length": length, "seed": 7,
            "press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0,
        }
        r = run_job(job, device="cpu")
        assert r["quality"]["score"] >= 0.95, (task, length, r["quality"])
        assert all(s["decode_tokens"] == 1 for s in r["samples"])  # answers, then stops at "."


def test_config_overrides_reach_the_loaded_model(study):
    """`models.NAME.config_overrides` (e.g. rope_scaling for YaRN) replace config entries at load, via the job."""
    from kvstudy.config import validate
    from kvstudy.grid import jobs
    from kvstudy.models import load_model

    study["models"]["tiny"]["config_overrides"] = {"rms_norm_eps": 0.125}
    job = jobs(validate(study))[0]
    model, _ = load_model(job.model_path, "float32", "sdpa", "cpu", job.config_overrides)
    assert model.config.rms_norm_eps == 0.125
    assert load_model(job.model_path, "float32", "sdpa", "cpu")[0].config.rms_norm_eps != 0.125
