"""Presses that observe the question (issue 20, point 2): `query_aware: prompt`, SnapKV/PyramidKV's own setting.

The whole prompt (context, then question) is prefilled once under the press, its last token fed after compression;
`query_aware: false` (question-blind) stays an explicit variant. A press that claims to see the question must keep
a different cache than the blind one: tested on the shipped model, position by position.
"""

import pytest
import torch

from kvstudy.engine.group import asked_ids, prefix_ids
from kvstudy.engine.stops import Stops
from kvstudy.evaluate import run_sample
from kvstudy.grid import slug
from kvstudy.measure import Clock
from kvstudy.presses.variant import PressRun, build_run
from kvstudy.tasks import get_task


@pytest.fixture(scope="module")
def samples(tiny):
    return get_task("kv_retrieval", {"n_samples": 4, "n_pairs": 64}).samples(tiny[1], 512, seed=0)


def prefill(model, run, ids):
    cache = run.new_cache(model)
    with torch.no_grad(), run.prefill(model, cache):
        model.model(input_ids=torch.tensor([ids]), past_key_values=cache)
    return cache


def compressed(model, run, ids):
    """(the compressed cache, per layer the positions each KV head kept): the positions are the top scores, as
    kvpress takes them, read from the press's own `score`; the test checks they are what the cache holds."""
    scores = {}
    score = run.press.score

    def spy(module, *args):
        scores[module.layer_idx] = score(module, *args)
        return scores[module.layer_idx]

    run.press.score = spy
    cache = prefill(model, run, ids)
    kept = {i: sc.topk(cache.layers[i].keys.shape[-2], dim=-1).indices[0] for i, sc in scores.items()}
    return cache, kept


def test_prompt_mode_prefills_the_prompt_once_and_feeds_its_last_token(samples):
    s = samples[0]
    assert prefix_ids(s, "prompt") == s.context_ids + s.question_ids[:-1]
    assert asked_ids(s, "prompt") == s.question_ids[-1:]
    assert prefix_ids(s, False) == s.context_ids and asked_ids(s, False) == s.question_ids
    assert prefix_ids(s, True) == s.context_ids + s.question_ids and asked_ids(s, True) == s.question_ids


@pytest.mark.parametrize("method", ["snapkv", "pyramidkv"])
def test_question_aware_cache_differs_from_the_blind_one_and_keeps_the_question(tiny, samples, method):
    model = tiny[0]
    params = {"cache_size": 128, "window_size": 8}
    for s in samples[:2]:
        n_ctx, n_q = len(s.context_ids), len(s.question_ids) - 1
        assert n_q >= 1  # kv_retrieval asks in 2 tokens: the first is prefilled, the second fed after
        full = prefill(model, PressRun(None), prefix_ids(s, "prompt"))
        blind, blind_kept = compressed(model, build_run(method, params, 0.0), prefix_ids(s, False))
        aware, aware_kept = compressed(model, build_run(method, params | {"query_aware": "prompt"}, 0.0),
                                       prefix_ids(s, "prompt"))
        for cache, kept in ((blind, blind_kept), (aware, aware_kept)):  # the positions are what the cache holds
            for i, idx in kept.items():
                dim = full.layers[i].keys.shape[-1]
                want = full.layers[i].keys[0].gather(1, idx.sort(-1).values.unsqueeze(-1).expand(-1, -1, dim))
                assert torch.allclose(cache.layers[i].keys[0].sort(1).values, want.sort(1).values, atol=1e-5)
        question = set(range(n_ctx, n_ctx + n_q))
        for i in aware_kept:
            heads_aware = [set(h.tolist()) for h in aware_kept[i]]
            heads_blind = [set(h.tolist()) for h in blind_kept[i]]
            assert all(question <= h for h in heads_aware)  # the window holds the question: kept whole
            assert [h - question for h in heads_aware] != heads_blind, \
                f"{method} layer {i}: the question-aware press kept the same context as the blind one"


def test_no_press_answers_the_same_whether_the_prompt_is_split_or_not(tiny, samples):
    """The prompt mode asks nothing twice: with the full cache it is the same prompt, computed in two calls."""
    model, tok = tiny
    stops = Stops.of(tok, ["."])
    for s in samples:
        blind = run_sample(model, tok, PressRun(None), s, 6, stops, Clock(model.device))
        whole = run_sample(model, tok, PressRun(None, query_aware="prompt"), s, 6, stops, Clock(model.device))
        assert whole["prediction"] == blind["prediction"]
        assert whole["prefill_tokens"] == len(s.context_ids) + len(s.question_ids) - 1
        assert whole["input_tokens"] == blind["input_tokens"]


def test_prompt_variant_has_its_own_slug_and_prefill_class():
    assert slug("snapkv", None, {"cache_size": 2048, "window_size": 256, "query_aware": "prompt"}) == \
        "snapkv-cs2048-ws256-qp"
    assert slug("snapkv", None, {"cache_size": 2048, "query_aware": True}).endswith("-qa")
    classes = {build_run("snapkv", {"query_aware": q}, 0.5).prefill_class("sdpa") for q in (False, True, "prompt")}
    assert len(classes) == 3
