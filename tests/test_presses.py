"""Every registered press really compresses the cache of the shipped model, and changes what it answers."""

import contextlib

import pytest
import torch
from transformers import DynamicCache

from kvstudy.measure import cache_size, full_cache_bytes
from kvstudy.presses import PRESSES, get_press
from kvstudy.tasks import get_task

RATIO_PRESSES = [name for name, spec in PRESSES.items() if spec.has_ratio]
LENGTH = 512


def prefill(model, press, ids):
    cache = DynamicCache()
    with torch.no_grad(), press(model) if press is not None else contextlib.nullcontext():
        model.model(input_ids=torch.tensor([ids]), past_key_values=cache)
    return cache


def answer_logits(model, press, sample):
    cache = prefill(model, press, sample.context_ids)
    n = len(sample.context_ids)
    q = torch.tensor([sample.question_ids])
    pos = torch.arange(n, n + q.shape[1]).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=q, past_key_values=cache, position_ids=pos).logits[0, -1]


@pytest.fixture(scope="module")
def samples(tiny):
    _, tok = tiny
    # 64 pairs = 128 informative tokens: more than a 0.9 press keeps of 512, so every press must lose some
    return get_task("kv_retrieval", {"n_samples": 8, "n_pairs": 64}).samples(tok, LENGTH, seed=0)


def test_the_foundation_presses_are_registered():
    assert {"no_press", "knorm", "streaming_llm", "snapkv", "tova", "expected_attention", "random"} <= set(PRESSES)


@pytest.mark.parametrize("name", RATIO_PRESSES)
@pytest.mark.parametrize("ratio", [0.25, 0.75])
def test_press_shrinks_the_real_cache_to_one_minus_ratio(tiny, samples, name, ratio):
    model, _ = tiny
    cache = prefill(model, get_press(name).build({"compression_ratio": ratio}), samples[0].context_ids)
    kept = int(LENGTH * (1 - ratio))  # kvpress keeps int(q_len * (1 - ratio)) tokens per layer
    for layer in cache.layers:
        assert layer.keys.shape[-2] == kept and layer.values.shape[-2] == kept
    tokens, nbytes = cache_size(cache)
    assert tokens == kept
    assert nbytes == full_cache_bytes(model, kept)


def test_no_press_cache_is_the_full_cache(tiny, samples):
    model, _ = tiny
    tokens, nbytes = cache_size(prefill(model, None, samples[0].context_ids))
    assert tokens == LENGTH and nbytes == full_cache_bytes(model, LENGTH)


@pytest.mark.parametrize("name", RATIO_PRESSES)
def test_ratio_zero_equals_no_press_exactly(tiny, samples, name):
    model, _ = tiny
    base = answer_logits(model, None, samples[0])
    same = answer_logits(model, get_press(name).build({"compression_ratio": 0.0}), samples[0])
    assert torch.equal(base, same)


@pytest.mark.parametrize("name", RATIO_PRESSES)
def test_high_ratio_changes_answers(tiny, samples, name):
    model, _ = tiny
    press = get_press(name).build({"compression_ratio": 0.9})
    base = [answer_logits(model, None, s).argmax().item() for s in samples]
    pressed = [answer_logits(model, press, s).argmax().item() for s in samples]
    assert base != pressed, f"{name} at ratio 0.9 answered exactly like the full cache on {len(samples)} samples"


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="no parameter 'window'"):
        get_press("snapkv").build({"compression_ratio": 0.5, "window": 3})
