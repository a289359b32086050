"""Absolute budgets (`cache_size`), SnapKV/PyramidKV pooling, and grids that leave out a window larger than its
cache (issue 20, point 3).

Expected sizes come from the rule the press claims (min(cache_size, n) entries per layer and KV head; PyramidKV:
that many on average, its per-layer budgets rounded) and expected scores from kvpress's own `SnapKVPress.score`.
"""

import pytest
import torch

from conftest import TINY
from kvstudy.config import ConfigError, validate
from kvstudy.grid import jobs, variants
from kvstudy.measure import cache_size
from kvstudy.presses import PRESSES
from kvstudy.presses.variant import PressRun, build_run
from kvstudy.tasks import get_task

SIZED = [n for n, spec in PRESSES.items() if spec.sizes]


def prefill(model, run, ids):
    cache = run.new_cache(model)
    with torch.no_grad(), run.prefill(model, cache):
        model.model(input_ids=torch.tensor([ids]), past_key_values=cache)
    return cache


@pytest.fixture(scope="module")
def eager(tiny):
    from kvstudy.models import load_model

    return load_model(TINY, "float32", "eager", "cpu")[0]


@pytest.fixture(scope="module")
def ids(tiny):
    return get_task("kv_retrieval", {"n_samples": 1, "n_pairs": 64}).samples(tiny[1], 512, seed=0)[0].context_ids


def test_every_scoring_prefill_press_takes_a_cache_size():
    assert {"knorm", "streaming_llm", "snapkv", "pyramidkv", "tova", "expected_attention", "random", "keydiff",
            "observed_attention"} <= set(SIZED)
    assert not PRESSES["cab"].sizes and not PRESSES["decoding"].sizes and not PRESSES["duo_attention"].sizes


@pytest.mark.parametrize("name", [n for n in SIZED if n != "pyramidkv"])
@pytest.mark.parametrize("n", [100, 512])  # shorter and longer than the budget
def test_cache_size_keeps_min_of_budget_and_input(tiny, eager, ids, name, n):
    model = eager if PRESSES[name].attention({}) == "eager" else tiny[0]
    params = {"cache_size": 200} | ({"window_size": 16} if name == "snapkv" else {})
    cache = prefill(model, build_run(name, params, 0.5), ids[:n])  # the ratio is ignored: the size rules
    for layer in cache.layers:
        assert layer.keys.shape[-2] == min(200, n)
    assert cache_size(cache)[0] == min(200, n)


@pytest.mark.parametrize("n", [100, 512])
def test_pyramidkv_cache_size_is_the_mean_of_its_pyramid(tiny, ids, n):
    # window 4: with beta 20 the pyramid's narrowest level (200 / 20) stays above the window (else kvpress is uniform)
    cache = prefill(tiny[0], build_run("pyramidkv", {"cache_size": 200, "window_size": 4}, 0.0), ids[:n])
    lengths = [layer.keys.shape[-2] for layer in cache.layers]
    if n <= 200:
        assert lengths == [n] * len(lengths)
    else:
        assert lengths[0] > lengths[1] and abs(sum(lengths) / len(lengths) - 200) <= 1


def test_eval_jobs_record_kv_tokens_of_min_budget_and_input(study):
    """Through the grid and the engine: lengths 128 and 512 against a 256-token cache."""
    from kvstudy.evaluate import run_job

    study["tasks"] = {"kv": {"kind": "kv_retrieval", "n_samples": 2, "n_pairs": 8, "max_new_tokens": 2}}
    study["lengths"] = [128, 512]
    study["presses"] = [{"method": "snapkv", "cache_size": 256, "window_size": 16, "pooling": ["avgpool", "maxpool"]}]
    js = jobs(validate(study))
    assert {j.press for j in js} == {f"snapkv-cs256-p{p}-ws16" for p in ("avgpool", "maxpool")}
    assert {(j.length, j.compression_ratio) for j in js} == {(128, 0.0), (512, 0.5)}  # nominal ratios
    for job in [j for j in js if j.params["pooling"] == "maxpool"]:
        raw = run_job(job, device="cpu")
        assert raw["status"] == "ok"
        assert [r["kv_tokens"] for r in raw["samples"]] == [min(256, r["prefill_tokens"]) for r in raw["samples"]]


def test_avgpool_is_kvpress_snapkv_and_maxpool_changes_the_cache(tiny, ids):
    from kvpress import SnapKVPress

    model = tiny[0]
    ours = build_run("snapkv", {"window_size": 16, "pooling": "avgpool"}, 0.75)
    theirs = PressRun(SnapKVPress(compression_ratio=0.75, window_size=16))
    a, b = prefill(model, ours, ids), prefill(model, theirs, ids)
    assert all(torch.equal(x.keys, y.keys) for x, y in zip(a.layers, b.layers))
    m = prefill(model, build_run("snapkv", {"window_size": 16, "pooling": "maxpool"}, 0.75), ids)
    assert cache_size(m)[0] == cache_size(a)[0]
    assert not all(torch.equal(x.keys, y.keys) for x, y in zip(a.layers, m.layers))


def test_maxpool_scores_are_at_least_the_average_kernel(tiny, ids):
    """Attention weights are non-negative: the kernel's max is at least its mean (the avgpool kernel counts the
    zero padding, so this holds at the edges too)."""
    from kvstudy.presses.snapkv_press import pooled_score

    model = tiny[0]
    captured = {}
    run = build_run("snapkv", {"window_size": 16, "pooling": "maxpool"}, 0.5)
    original = type(run.press).score

    def spy(self, module, hidden_states, keys, values, attentions, kwargs):
        out = original(self, module, hidden_states, keys, values, attentions, kwargs)
        self.pooling = "avgpool"
        captured[module.layer_idx] = (out, pooled_score(self, module, hidden_states, keys, values, attentions, kwargs))
        self.pooling = "maxpool"
        return out

    run.press.score = spy.__get__(run.press)
    prefill(model, run, ids)
    for mx, avg in captured.values():
        assert (mx[..., :-16] >= avg[..., :-16] - 1e-7).all() and not torch.allclose(mx, avg)


def test_windows_larger_than_the_cache_are_left_out_and_said(study, capsys):
    study["presses"] = [{"method": "pyramidkv", "cache_size": [64, 256], "window_size": [32, 128]}]
    config = validate(study)
    assert sorted(v["press"] for v in variants(config)) == ["pyramidkv-cs256-ws128", "pyramidkv-cs256-ws32",
                                                          "pyramidkv-cs64-ws32"]
    err = capsys.readouterr().err
    assert "note: presses[0] (pyramidkv): 1 variant(s) left out, window_size larger than cache_size: " \
           "window 128 > cache 64" in err


@pytest.mark.parametrize("entry, words", [
    ({"method": "snapkv", "cache_size": 256, "compression_ratio": 0.5}, r"presses\[0\]\.cache_size: give"),
    ({"method": "snapkv", "cache_size": 0}, r"presses\[0\]\.cache_size: 0 is"),
    ({"method": "snapkv", "cache_size": 2.5}, r"presses\[0\]\.cache_size: 2.5 is not"),
    ({"method": "cab", "cache_size": 256}, r"presses\[0\]\.compression_ratio: required"),
    ({"method": "cab", "cache_size": 256, "compression_ratio": 0.5}, r"presses\[0\]\.cache_size: press 'cab' has no"),
    ({"method": "snapkv", "cache_size": 256, "pooling": "minpool"}, r"presses\[0\]\.pooling: 'minpool' is not"),
    ({"method": "snapkv", "compression_ratio": 0.5, "query_aware": "yes"}, r"presses\[0\]\.query_aware"),
])
def test_bad_budget_settings_are_refused(study, entry, words):
    study["presses"] = [entry]
    with pytest.raises(ConfigError, match=words):
        validate(study)
