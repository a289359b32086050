import re

import numpy as np
import pytest

from kvstudy.models.tiny import build_tokenizer
from kvstudy.tasks import TASKS, get_task
from kvstudy.tasks.haystack import PieceTokenizer, build_context


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.mark.parametrize("kind", ["niah", "kv_retrieval"])
@pytest.mark.parametrize("length", [64, 257, 1024, 3001])
def test_contexts_hit_the_exact_length(tok, kind, length):
    params = {"n_samples": 5} | ({"n_pairs": 8} if kind == "kv_retrieval" else {})
    for s in get_task(kind, params).samples(tok, length, seed=0):
        assert len(s.context_ids) == length
        assert s.context_ids[0] == tok.bos_token_id


@pytest.mark.parametrize("kind", ["niah", "kv_retrieval"])
def test_needle_sits_where_recorded_and_answers_the_question(tok, kind):
    for s in get_task(kind, {"n_samples": 12}).samples(tok, 512, seed=3):
        off = s.meta["needle_offset"]
        value, key = tok.convert_ids_to_tokens(s.context_ids[off : off + 2])
        assert [value] == s.references
        assert tok.convert_ids_to_tokens(s.question_ids) == ["?", key]
        assert s.depth == pytest.approx(off / 512, abs=0.02)


def test_niah_spreads_depths_over_equal_bins(tok):
    samples = get_task("niah", {"n_samples": 20, "n_depths": 5}).samples(tok, 1000, seed=0)
    assert [int(s.depth * 5) for s in samples] == [i % 5 for i in range(20)]  # depth bin k: [k/5, (k+1)/5)
    # depth is the needle's start as a fraction of the haystack (after BOS, before the 2-token needle)
    assert all(s.meta["needle_offset"] == 1 + round(s.depth * (1000 - 3)) for s in samples)


def test_kv_retrieval_keys_are_distinct_and_the_queried_one_is_unique(tok):
    for s in get_task("kv_retrieval", {"n_samples": 5, "n_pairs": 32}).samples(tok, 1024, seed=1):
        words = tok.convert_ids_to_tokens(s.context_ids)
        keys = [w for w in words if re.fullmatch(r"k\d{3}", w)]
        assert len(keys) == len(set(keys)) == 32
        assert words.count(tok.convert_ids_to_tokens(s.question_ids)[1]) == 1


def test_generation_is_seeded(tok):
    task = get_task("kv_retrieval", {"n_samples": 3})
    a, b, c = (task.samples(tok, 256, seed=s) for s in (0, 0, 1))
    assert [s.context_ids for s in a] == [s.context_ids for s in b]
    assert [s.context_ids for s in a] != [s.context_ids for s in c]


def test_context_too_short_for_its_needles_is_an_error(tok):
    enc = PieceTokenizer(tok)
    with pytest.raises(ValueError, match="too short"):
        build_context(np.random.default_rng(0), enc, 4, [enc("v001 k001")] * 3, [0.1, 0.5, 0.9])


def test_registry_lists_metric_and_params():
    assert TASKS["niah"].metric == "string_match_all"
    assert TASKS["kv_retrieval"].params()["n_pairs"] == 32
    with pytest.raises(KeyError, match="registered"):
        get_task("nope")
