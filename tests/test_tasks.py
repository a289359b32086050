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


# --- every parameter has a type and a range, checked when the task is made (config validation) ----------------


def test_every_numeric_parameter_of_every_task_has_a_range():
    from dataclasses import fields

    for name, cls in TASKS.items():
        numeric = {f.name for f in fields(cls) if f.type in ("int", "float")}
        assert numeric <= set(cls.ranges()), (name, numeric - set(cls.ranges()))


def _valid_params(cls) -> dict:
    """Parameters that make the task (a source where it reads data, code execution where it needs it)."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    out = {"source": "x.jsonl"} if "source" in names else {}
    if cls.name == "longproc":
        out["subtask"] = "html_to_tsv"
    if cls.name == "helmet_cite":
        out.update(shots=0, judge="org/judge")
    return out


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_wrong_types_and_out_of_range_values_are_refused_naming_the_parameter(kind):
    from dataclasses import fields

    from kvstudy.tasks.base import TaskParamError

    cls = TASKS[kind]
    base = _valid_params(cls)
    cls(**base)
    wrong = {"int": ["twelve", 2.5, True, None], "float": ["high", None, float("inf")], "bool": ["yes", 1, None],
             "str": [3, None, ["a"]], "tuple": ["\n", [3], [""], None], "tuple | None": ["\n", [3], [""], 5],
             "dict | None": [0.3, "0.3", {"by": "context"}, {"fraction": 1.0}, {"fraction": 0.3, "size": 2}]}
    for f in fields(cls):
        for value in wrong[f.type]:
            with pytest.raises(TaskParamError) as e:
                cls(**{**base, f.name: value})
            assert e.value.key == f.name, (f.name, value)
        if f.name in cls.ranges():
            low, high = cls.ranges()[f.name]
            for value in (low - 1, high + 1):
                with pytest.raises(TaskParamError, match=r"is outside \[") as e:
                    cls(**{**base, f.name: type(f.default)(value)})
                assert e.value.key == f.name


@pytest.mark.parametrize("params, key, words", [
    ({"n_depths": 0}, "n_depths", "0 is outside [1, 1000]"),
    ({"n_depths": -3}, "n_depths", "-3 is outside [1, 1000]"),
    ({"needle_template": "{value} {key.__class__}"}, "needle_template", "placeholder {key.__class__}"),
    ({"needle_template": "{value}"}, "needle_template", "has no {key}"),
    ({"question_template": " ? {value}"}, "question_template", "placeholder {value}"),
])
def test_niah_parameters(params, key, words):
    from kvstudy.tasks.base import TaskParamError

    with pytest.raises(TaskParamError) as e:
        get_task("niah", params)
    assert e.value.key == key and words in str(e.value)


@pytest.mark.parametrize("kind, params, key", [
    ("kv_retrieval", {"n_pairs": 129}, "n_pairs"),  # more than the lexicon's 128 distinct keys
    ("ruler_niah", {"num_keys": 2, "num_queries": 3}, "num_queries"),
    ("cwe", {"freq_common": 3, "freq_uncommon": 3}, "freq_uncommon"),
    ("fwe", {"alpha": 1.0}, "alpha"),
    ("fwe", {"vocab_size": 3, "top_k": 3}, "top_k"),
    ("perplexity", {"source": "x.txt", "continuation_tokens": 1}, "continuation_tokens"),
    ("perplexity", {}, "source"),
    ("hf_qa", {"source": " "}, "source"),
    ("hf_qa", {"source": "x.jsonl", "template": "{question}"}, "template"),
    ("hf_qa", {"source": "x.jsonl", "bad_rows": "ignore"}, "bad_rows"),
    ("longproc", {"source": "x.json", "min_output_tokens": 10, "max_output_tokens": 5}, "max_output_tokens"),
])
def test_parameters_that_depend_on_each_other(kind, params, key):
    from kvstudy.tasks.base import TaskParamError

    with pytest.raises(TaskParamError) as e:
        get_task(kind, params)
    assert e.value.key == key
