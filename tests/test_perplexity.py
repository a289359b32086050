"""Perplexity under compression on the shipped model and a shipped text in its vocabulary (tests/data)."""

import json
import math

import jsonschema
import pytest
import torch

from conftest import ROOT, TINY
from kvstudy.evaluate import run_job
from kvstudy.perplexity import prefill, score_continuation
from kvstudy.tasks import get_task
from kvstudy.schemas import DIR as SCHEMAS

TEXT = str(ROOT / "tests" / "data" / "tiny_text.txt")
PARAMS = {"source": TEXT, "n_samples": 3, "continuation_tokens": 64, "chunk_size": 24}


def job(method="no_press", ratio=0.0, **extra):
    press = method if method == "no_press" else f"{method}-cr{ratio:.2f}"
    return {
        "model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
        "task": "ppl", "task_kind": "perplexity", "task_params": PARAMS | extra, "length": 256, "seed": 0,
        "press": press, "method": method, "params": {}, "compression_ratio": ratio, "stop_words": [".", "\n"],
    }


@pytest.fixture(scope="module")
def base():
    return run_job(job(), device="cpu")


def test_windows_are_context_then_its_continuation(tiny):
    _, tok = tiny
    words = open(TEXT).read().split()
    for i, s in enumerate(get_task("perplexity", PARAMS).samples(tok, 256, seed=0)):
        assert len(s.context_ids) == 256 and s.context_ids[0] == tok.bos_token_id and len(s.question_ids) == 64
        assert tok.convert_ids_to_tokens(s.context_ids[1:] + s.question_ids) == words[i * 319 : (i + 1) * 319]


def test_too_short_a_text_is_an_error(tiny):
    with pytest.raises(ValueError, match="needed"):
        get_task("perplexity", PARAMS | {"n_samples": 50}).samples(tiny[1], 256, seed=0)


def test_result_contract_and_no_press_is_its_own_reference(base):
    jsonschema.validate(base, json.loads((SCHEMAS / "result.schema.json").read_text()))
    q = base["quality"]
    assert q["metric"] == "perplexity" and q["higher_is_better"] is False and q["n"] == 3
    assert q["scored_tokens"] == 3 * 63  # continuation token 0 is fed, not scored
    assert base["fidelity"] == {"reference": "no_press", "kl": 0.0, "top1_agreement": 1.0, "n_tokens": 189}
    assert base["efficiency"]["kv_tokens_kept"] == 256


def test_ratio_zero_equals_no_press_exactly(base):
    r = run_job(job("knorm", 0.0), device="cpu")
    assert r["quality"]["score"] == base["quality"]["score"]
    assert [s["nll_sum"] for s in r["samples"]] == [s["nll_sum"] for s in base["samples"]]


@pytest.mark.parametrize("method", ["knorm", "streaming_llm"])
def test_a_press_at_075_changes_perplexity_and_fidelity(base, method):
    r = run_job(job(method, 0.75), device="cpu")
    assert r["efficiency"]["kv_tokens_kept"] == 64
    # the evicted pairs' values become unpredictable: perplexity rises, the distributions diverge
    assert r["quality"]["score"] > base["quality"]["score"] * 1.05
    assert r["fidelity"]["kl"] > 0.01 and r["fidelity"]["top1_agreement"] < 1.0


def test_teacher_forcing_after_a_full_cache_matches_one_forward_pass(tiny):
    """Positions and chunking are right: with no press the chunked loop equals a single pass over the text."""
    model, tok = tiny
    s = get_task("perplexity", PARAMS).samples(tok, 256, seed=0)[1]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([s.context_ids + s.question_ids])).logits[0].float()
    logp = torch.log_softmax(logits[256:-1], -1)  # positions of continuation tokens 0..C-2
    target = torch.tensor(s.question_ids[1:])
    want = -float(logp.gather(-1, target[:, None]).sum())
    got = score_continuation(model, prefill(model, s.context_ids, None), 256, s.question_ids, chunk_size=7)
    assert got["scored_tokens"] == 63 and got["nll_sum"] == pytest.approx(want, rel=1e-4)
    assert math.isfinite(got["nll_sum"])


def test_uneven_per_layer_caches_are_scored_token_by_token(tiny):
    """PyramidKV-style budgets differ per layer; a multi-token chunk would fail in the mask."""
    from kvpress import PyramidKVPress

    model, tok = tiny
    s = get_task("perplexity", PARAMS).samples(tok, 256, seed=0)[0]
    cache = prefill(model, s.context_ids, PyramidKVPress(compression_ratio=0.5, window_size=16))
    assert len({layer.keys.shape[-2] for layer in cache.layers}) > 1
    r = score_continuation(model, cache, 256, s.question_ids, 24, prefill(model, s.context_ids, None))
    assert r["chunk_size"] == 1 and r["scored_tokens"] == 63 and r["kl_sum"] > 0


def test_windows_run_across_rows_of_a_jsonl_with_the_separator(tiny, tmp_path):
    _, tok = tiny
    words = open(TEXT).read().split()
    rows = [" ".join(words[k : k + 90]) for k in range(0, 900, 90)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": r}) + "\n" for r in rows))
    task = get_task("perplexity", {"source": str(path), "text_column": "body", "separator": " .",
                                   "n_samples": 2, "continuation_tokens": 20})
    s = task.samples(tok, 128, seed=0)
    stream = " . ".join(rows).split()
    assert tok.convert_ids_to_tokens(s[0].context_ids[1:] + s[0].question_ids) == stream[:147]
    assert tok.convert_ids_to_tokens(s[1].context_ids[1:]) == stream[147 : 147 + 127]
    assert task.samples(tok, 128, seed=1)[0].meta["start_document"] != 0  # the seed picks the first row
    with pytest.raises(ValueError, match="no column 'text'"):
        get_task("perplexity", {"source": str(path), "n_samples": 1}).samples(tok, 128, 0)


def _ppl_job(method, params, ratio, text):
    return {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
            "task": "ppl", "task_kind": "perplexity",
            "task_params": {"source": str(text), "n_samples": 2, "continuation_tokens": 48, "chunk_size": 16},
            "length": 256, "seed": 0, "press": "x", "method": method, "params": params,
            "compression_ratio": ratio}


@pytest.mark.parametrize("method,params,ratio", [
    ("int4", {}, 0.0),  # a quantized cache: fewer bytes, different logits
    ("decoding_budget", {"press": "knorm", "target_size": 128}, 0.0),  # eviction while the continuation is fed
])
def test_quantized_and_decoding_presses_reach_the_scored_tokens(method, params, ratio):
    from kvstudy.perplexity import run_perplexity_job

    base = run_perplexity_job(_ppl_job("no_press", {}, 0.0, TEXT))
    res = run_perplexity_job(_ppl_job(method, params, ratio, TEXT))
    assert res["quality"]["score"] != base["quality"]["score"]
    assert res["fidelity"]["kl"] > 0
    eff, full = res["efficiency"], base["efficiency"]
    if method == "int4":
        assert eff["kv_bytes"] < 0.5 * full["kv_bytes"]
    else:  # the cache after the continuation is cut to the budget, the uncompressed one grew
        assert eff["kv_tokens_final"] <= 128 + 1 < full["kv_tokens_final"]


def test_query_aware_with_perplexity_is_a_config_error(study):
    from kvstudy.config import ConfigError, validate

    study["tasks"] = {"ppl": {"kind": "perplexity", "source": str(TEXT)}}
    study["presses"] = [{"method": "knorm", "compression_ratio": 0.5, "query_aware": True}]
    with pytest.raises(ConfigError, match=r"presses\[0\]\.query_aware"):
        validate(study)
