"""The `random` press draws a new mask per sample and layer (its floor is an average, not one draw) and the same
masks on a rerun; kvpress's own RandomPress, seeded once per call, drops the same positions everywhere."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kvstudy.models.tiny import build_tokenizer
from kvstudy.presses.variant import build_run
from kvstudy.tasks import get_task

TINY = "builtin:tiny-retrieval"


def _scores(press, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    keys = torch.zeros(1, 2, hidden.shape[1], 8)
    return press.score(SimpleNamespace(layer_idx=layer), hidden, keys, keys, None, {})


def _kept(scores: torch.Tensor, ratio: float = 0.5) -> set[tuple[int, int]]:
    n = scores.shape[-1]
    idx = scores.topk(int(n * (1 - ratio)), dim=-1).indices[0]
    return {(h, int(i)) for h in range(idx.shape[0]) for i in idx[h]}


def test_kvpress_random_press_draws_one_mask_for_every_sample_and_layer():
    """The failure this press fixes: kvpress seeds its generator with `seed` at every call."""
    from kvpress import RandomPress

    press = RandomPress(compression_ratio=0.5, seed=0)
    a, b = torch.randn(1, 64, 32), torch.randn(1, 64, 32)
    assert torch.equal(_scores(press, 0, a), _scores(press, 0, b))
    assert torch.equal(_scores(press, 0, a), _scores(press, 1, a))


def test_random_draws_per_sample_and_layer_and_repeats_on_a_rerun():
    press = build_run("random", {}, 0.5).press
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 64, 32, generator=g), torch.randn(1, 64, 32, generator=g)
    assert torch.equal(_scores(press, 0, a), _scores(press, 0, a.clone()))  # same context: same mask
    assert not torch.equal(_scores(press, 0, a), _scores(press, 0, b))  # another sample: another mask
    assert not torch.equal(_scores(press, 0, a), _scores(press, 1, a))  # another layer: another mask
    other = build_run("random", {"seed": 1}, 0.5).press  # another variant seed: other masks
    assert not torch.equal(_scores(press, 0, a), _scores(other, 0, a))


def test_the_context_is_read_at_the_first_layer_of_a_forward():
    """Deeper layers' hidden states do not seed the mask (on some devices they may differ in the last bit on a
    rerun); the first layer scored in the forward does, and a new first-layer call is a new sample."""
    press = build_run("random", {}, 0.5).press
    g = torch.Generator().manual_seed(2)
    a, deep, other_deep, b = (torch.randn(1, 64, 32, generator=g) for _ in range(4))
    _scores(press, 0, a)
    first = _scores(press, 1, deep)
    _scores(press, 0, a)
    assert torch.equal(first, _scores(press, 1, other_deep))  # same sample: layer 1's own states do not matter
    _scores(press, 0, b)
    assert not torch.equal(first, _scores(press, 1, deep))  # another sample at layer 0: another mask at layer 1


@pytest.fixture(scope="module")
def tiny():
    from kvstudy.models import load_model

    torch.set_num_threads(1)
    return load_model(TINY, "float32", "sdpa", "cpu")[0]


def _prefill_masks(model, run, ids: list[int]) -> tuple[list[set], int]:
    """Kept (head, position) sets per layer when prefilling `ids` under `run`, and the tokens the cache holds."""
    from kvstudy.perplexity import prefill

    kept, score = [], run.press.score

    def recording(module, hidden_states, keys, *rest):
        s = score(module, hidden_states, keys, *rest)
        kept.append(_kept(s))
        return s

    run.press.score = recording
    try:
        cache = prefill(model, ids, run)
    finally:
        del run.press.score
    return kept, cache.layers[0].keys.shape[2]


def test_random_masks_differ_across_samples_and_layers_of_a_job(tiny):
    samples = get_task("niah", {"n_samples": 2}).samples(build_tokenizer(), 256, seed=0)
    run = build_run("random", {}, 0.5)
    (a, n_a), (b, _), (again, _) = (_prefill_masks(tiny, run, s.context_ids)
                                    for s in (samples[0], samples[1], samples[0]))
    assert n_a == 128  # the cache really is compressed
    assert len(a) == tiny.config.num_hidden_layers >= 2
    assert a == again  # a rerun of the sample draws the same masks
    assert a[0] != b[0] and a[1] != b[1]  # each sample its own mask
    assert a[0] != a[1]  # and each layer
