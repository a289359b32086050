"""A task's extra metrics (task parameter `metrics`): scored per sample beside the score, their means in
quality.sub_scores, one results.csv / samples.csv column each (kvstudy.metric_columns); names checked by validation."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import TINY
from kvstudy.aggregate import RESULT_COLUMNS, SAMPLE_COLUMNS, aggregate
from kvstudy.config import ConfigError, validate
from kvstudy.metrics import METRICS, exact_match
from kvstudy.metrics.qa import rouge_l_f1, substring_exact_match, token_f1
from kvstudy.rawcheck import problem
from kvstudy.tasks import get_task

FUNCTIONS = {"exact_match": exact_match, "substring_exact_match": substring_exact_match, "token_f1": token_f1,
             "rouge_l_f1": rouge_l_f1}


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """An hf_qa job on the tiny model whose references the answers match exactly, in part, or not at all: its
    raw result and the tables aggregated from it."""
    from kvstudy.evaluate import run_job
    from kvstudy.models.tiny import build_tokenizer

    tmp = tmp_path_factory.mktemp("qa")
    tok = build_tokenizer()
    # the tiny model answers a kv_retrieval question with its value (test_hf_tasks: score 1.0 on the full cache);
    # the references around that value make EM, token F1 and ROUGE-L differ from sample to sample
    rows = []
    for i, s in enumerate(get_task("kv_retrieval", {"n_samples": 4, "n_pairs": 8}).samples(tok, 200, 0)):
        value = s.references[0]
        refs = [[value], [f"{value} the value"], ["nothing", f"key {value} value here"], ["wrong"]][i]
        rows.append({"context": tok.decode(s.context_ids[1:]), "question": tok.decode(s.question_ids),
                     "answer_prefix": "", "answer": refs, "max_new_tokens": 1})
    path = tmp / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
           "task": "qa", "task_kind": "hf_qa",
           "task_params": {"source": str(path), "template": "{context} {question}", "n_samples": 4,
                           "metrics": list(FUNCTIONS)},
           "length": 256, "seed": 0, "press": "no_press", "method": "no_press", "params": {},
           "compression_ratio": 0.0, "stop_words": ["."]}
    raw = run_job(job, device="cpu")
    (tmp / "raw.json").write_text(json.dumps(raw))
    aggregate([tmp / "raw.json"], tmp / "tables")
    return raw, tmp / "tables"


def test_each_sample_scores_each_extra_metric_as_metrics_qa_does(qa_run):
    raw, tables = qa_run
    samples = pd.read_csv(tables / "samples.csv", dtype={"prediction": str, "references": str}, keep_default_na=False)
    assert len(samples) == 4 and list(samples.columns) == SAMPLE_COLUMNS + sorted(FUNCTIONS)
    for _, s in samples.iterrows():
        refs = s["references"].split("|")
        for name, fn in FUNCTIONS.items():
            assert float(s[name]) == pytest.approx(fn(s["prediction"], refs)), (name, s["prediction"], refs)
    # the references were built so that the metrics tell the samples apart (a wiring slip would show)
    assert samples["token_f1"].astype(float).nunique() >= 3
    assert samples["exact_match"].astype(float).tolist() != samples["token_f1"].astype(float).tolist()
    assert raw["quality"]["metric"] == "string_match_all"  # the task's own metric is still what `score` means
    assert problem(raw) is None


def test_results_column_is_the_mean_of_the_samples_column(qa_run):
    raw, tables = qa_run
    results = pd.read_csv(tables / "results.csv")
    samples = pd.read_csv(tables / "samples.csv")
    assert list(results.columns) == RESULT_COLUMNS + sorted(FUNCTIONS)
    for name in FUNCTIONS:
        assert results[name].iloc[0] == pytest.approx(samples[name].mean())
        assert raw["quality"]["sub_scores"][name] == pytest.approx(samples[name].mean())
    assert results[["citation_recall", "citation_precision"]].isna().all(axis=None)


def test_a_sub_score_that_is_not_its_samples_mean_is_refused(qa_run):
    raw = json.loads(json.dumps(qa_run[0]))
    raw["quality"]["sub_scores"]["token_f1"] += 0.25
    assert problem(raw).startswith("quality.sub_scores.token_f1 is ")
    raw = json.loads(json.dumps(qa_run[0]))
    del raw["samples"][1]["rouge_l_f1"]
    assert problem(raw) == "samples[1].rouge_l_f1 is missing (quality.sub_scores has 'rouge_l_f1')"


def test_qa_tasks_default_to_em_f1_rouge_and_others_to_none():
    qa = ("substring_exact_match", "token_f1", "rouge_l_f1")
    for kind, params in (("hf_qa", {"source": "x.jsonl"}), ("narrativeqa", {}), ("helmet_rag", {"source": "x"})):
        assert get_task(kind, params).metrics == qa
    assert get_task("niah", {}).metrics == () and get_task("hf_qa", {"source": "x", "metrics": []}).metrics == ()


@pytest.mark.parametrize("entry, match", [
    ({"kind": "hf_qa", "source": "x.jsonl", "metrics": ["token_f1", "bleu"]},
     r"^config error: tasks\.qa\.metrics: 'bleu' is not a registered metric"),
    ({"kind": "niah", "metrics": ["cpp_tests_pass"]}, r"tasks\.qa\.metrics: 'cpp_tests_pass' is not a registered"),
    ({"kind": "niah", "metrics": ["token_f1", "token_f1"]}, r"tasks\.qa\.metrics: .* names a metric twice"),
    ({"kind": "niah", "metrics": "token_f1"}, r"tasks\.qa\.metrics: "),
    ({"kind": "perplexity", "metrics": ["token_f1"]}, r"tasks\.qa\.metrics: a perplexity task has no prediction"),
])
def test_a_bad_metric_name_is_a_config_error_naming_task_and_metric(study, entry, match):
    study["tasks"] = {"qa": entry}
    with pytest.raises(ConfigError, match=match) as e:
        validate(study)
    assert "\n" not in str(e.value)


def test_metric_names_never_collide_with_table_columns():
    """A metric's column is named like the metric: no fixed column of results.csv or samples.csv may be one."""
    assert not set(METRICS) & (set(RESULT_COLUMNS) | set(SAMPLE_COLUMNS))
