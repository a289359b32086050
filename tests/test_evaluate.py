"""One eval job end to end on the shipped model: the raw result contract, honest sizes, determinism."""

import json
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, TINY
from kvstudy.evaluate import run_job, write_atomic
from kvstudy.schemas import DIR as SCHEMAS


def job(method="no_press", ratio=0.0, task="niah", length=256, n=4):
    press = method if method == "no_press" else f"{method}-cr{ratio:.2f}"
    return {
        "model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
        "task": task, "task_kind": task, "task_params": {"n_samples": n}, "length": length, "seed": 0,
        "press": press, "method": method, "params": {}, "compression_ratio": ratio, "stop_words": [".", "\n"],
    }


@pytest.fixture(scope="module")
def schema():
    return json.loads((SCHEMAS / "result.schema.json").read_text())


@pytest.fixture(scope="module")
def base():
    return run_job(job(), device="cpu")


def test_raw_result_follows_the_schema(base, schema):
    jsonschema.validate(base, schema)
    assert base["status"] == "ok" and base["quality"]["n"] == 4
    s = base["samples"][0]
    assert s["context_tokens"] == 256 and s["input_tokens"] == 258  # "? key" after the context
    assert s["prefill_seconds"] > 0 and s["ttft_seconds"] >= s["prefill_seconds"]
    assert base["provenance"]["torch"] and base["provenance"]["host"]


def test_full_cache_answers_and_sizes_are_read_from_tensors(base):
    assert base["quality"]["score"] == 1.0  # the shipped model retrieves with the full cache
    e = base["efficiency"]
    assert e["kv_tokens_kept"] == 256 and e["kv_fraction_kept"] == 1.0
    assert e["kv_bytes"] == e["kv_bytes_full"] == 2 * 2 * 2 * 32 * 256 * 4  # K,V x layers x kv heads x dim x fp32
    # no CPU peak: the lifetime RSS (imports, model load) is not the job's memory (issue 15)
    assert e["peak_memory_kind"] == "none" and e["peak_memory_bytes"] is None


def test_press_result_reports_what_it_kept(schema):
    r = run_job(job("streaming_llm", 0.75), device="cpu")
    jsonschema.validate(r, schema)
    e = r["efficiency"]
    assert e["kv_tokens_kept"] == 64 and e["kv_fraction_kept"] == 0.25
    assert e["kv_bytes"] == e["kv_bytes_full"] / 4


def test_same_job_twice_gives_the_same_predictions(base):
    again = run_job(job(), device="cpu")
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in base["samples"]]


def test_write_is_atomic(tmp_path: Path, base):
    out = tmp_path / "a" / "seed0.json"
    write_atomic(base, out)
    assert json.loads(out.read_text())["job"] == base["job"]
    assert [p.name for p in out.parent.iterdir()] == ["seed0.json"]  # no temp file left behind

    with pytest.raises(TypeError):  # fails half-way through the dump, like a job killed mid-write
        write_atomic({**base, "zz": object()}, out)
    assert json.loads(out.read_text())["job"] == base["job"]  # the old result is intact
    assert [p.name for p in out.parent.iterdir()] == ["seed0.json"]


def test_injected_oom_is_a_result_not_a_crash(monkeypatch, schema, tmp_path):
    from kvstudy.aggregate import aggregate

    monkeypatch.setenv("KVSTUDY_INJECT_OOM", "knorm-*")
    r = run_job(job("knorm", 0.5), device="cpu")
    jsonschema.validate(r, schema)
    assert r["status"] == "oom" and "out of memory" in r["error"]
    assert r["quality"]["score"] is None and r["samples"] == []
    assert run_job(job("snapkv", 0.5), device="cpu")["status"] == "ok"  # other presses are untouched

    write_atomic(r, tmp_path / "raw.json")
    aggregate([tmp_path / "raw.json"], tmp_path / "tables")
    import pandas as pd

    row = pd.read_csv(tmp_path / "tables/results.csv").iloc[0]
    assert row.status == "oom" and pd.isna(row.score)


def test_press_needing_eager_attention_gets_an_eager_model(schema):
    r = run_job(job("observed_attention", 0.5, n=2), device="cpu")
    jsonschema.validate(r, schema)
    assert r["efficiency"]["attn_implementation"] == "eager" and r["efficiency"]["kv_tokens_kept"] == 128


def test_variant_options_reach_the_run_and_the_accounting(schema):
    qa = {**job("snapkv", 0.5, n=2), "press": "snapkv-cr0.50-qa", "params": {"query_aware": True}}
    r = run_job(qa, device="cpu")
    jsonschema.validate(r, schema)
    e = r["efficiency"]
    assert e["kv_tokens_full"] == 256 + 2 and e["kv_tokens_kept"] == int(258 * 0.5)  # the press saw the question

    q = {**job("knorm", 0.5, n=2), "press": "knorm-cr0.50+int4", "params": {"quantization": "int4"}}
    r = run_job(q, device="cpu")
    jsonschema.validate(r, schema)
    e = r["efficiency"]
    assert e["kv_tokens_kept"] == 128 and e["kv_bytes"] < e["kv_bytes_full"] / 2 / 6


def test_masking_press_reports_attended_fraction_beside_full_bytes():
    r = run_job(job("adakv", 0.5, n=2), device="cpu")
    e = r["efficiency"]
    assert e["kv_fraction_kept"] == 1.0 and e["kv_bytes"] == e["kv_bytes_full"]
    assert e["kv_fraction_attended"] == 0.5


@pytest.mark.parametrize("kind, params", [
    ("longproc", {"subtask": "html_to_tsv", "source": "x.json"}),
    ("path_traversal", {}),
    ("countdown", {}),
    ("helmet_cite", {"source": "x.json", "shots": 0}),
])
def test_long_output_tasks_stop_only_at_end_of_sequence(kind, params):
    """A multi-line answer (a TSV table, a route, a search trace, cited sentences) cut at the first "." or newline
    would score 0 on a real tokenizer, where both are single tokens."""
    from kvstudy.evaluate import stop_words
    from kvstudy.tasks import get_task

    from kvstudy.job import Job

    job = Job.from_dict({"model": "m", "model_path": "m", "task": "t", "length": 256, "seed": 0, "press": "no_press",
                         "method": "no_press", "stop_words": [".", "\n"]})
    assert stop_words(get_task(kind, params), job) == []
    assert stop_words(get_task("niah", {}), job) == [".", "\n"]  # short answers keep the study's stop words


def test_generation_stops_at_the_models_end_ids_too(tiny):
    """An instruct model's end-of-turn token is often only in generation_config.eos_token_id (Llama-3.1's
    <|eot_id|>, Qwen2.5's <|endoftext|>): without it a long-output task would run to max_new_tokens."""
    from transformers import GenerationConfig

    from kvstudy.engine.stops import stop_token_ids

    _, tokenizer = tiny
    end_of_turn = tokenizer.convert_tokens_to_ids("?")
    assert end_of_turn != tokenizer.eos_token_id
    assert stop_token_ids(tokenizer, []) == {tokenizer.eos_token_id}
    assert stop_token_ids(tokenizer, [], GenerationConfig(eos_token_id=[tokenizer.eos_token_id, end_of_turn])) == {
        tokenizer.eos_token_id, end_of_turn}
    assert end_of_turn in stop_token_ids(tokenizer, [], GenerationConfig(eos_token_id=end_of_turn))
