"""Tasks on real data, each loader on a small local file in its benchmark's format (tests/data): truncation to the
length with the model's tokenizer, chat template, real lengths, references and metrics."""

import json

import pandas as pd
import pytest

from bpe import train_bpe
from conftest import ROOT, TINY
from kvstudy.config import ConfigError, validate
from kvstudy.metrics import METRICS
from kvstudy.tasks import get_task

DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def bpe():
    return train_bpe()


@pytest.fixture(scope="module")
def bpe_chat():
    return train_bpe(chat=True)


def kvpress(**kw):
    return get_task("hf_qa", {"source": str(DATA / "kvpress_format.jsonl")} | kw)


def test_kvpress_format_rows_become_samples(bpe):
    samples = kvpress().samples(bpe, 4096, 0)
    assert len(samples) == 3
    s = samples[1]
    assert bpe.decode(s.context_ids) == "<s>A short context about the lake."
    assert bpe.decode(s.question_ids) == "\nWhere? Answer:"
    assert s.references == ["lake"] and s.meta["max_new_tokens"] == 5 and not s.meta["truncated"]
    assert samples[2].references == ["river", "water"]


@pytest.mark.parametrize("mode", ["middle", "left", "right"])
def test_long_context_is_cut_to_the_length(bpe, mode):
    s = kvpress(truncation=mode, n_samples=1).samples(bpe, 300, 0)[0]
    text = bpe.decode(s.context_ids)
    assert len(s.context_ids) == 300 and s.meta["truncated"] and s.meta["original_context_tokens"] > 300
    assert ("START" in text) == (mode != "left")
    assert ("END" in text) == (mode != "right")
    assert "MIDDLE" not in text


def test_subset_selects_rows_and_a_parquet_file_reads_the_same(bpe, tmp_path):
    assert [s.references for s in kvpress(subset="niah_single_1").samples(bpe, 4096, 0)] == [["hotel7"], ["river", "water"]]
    pq = tmp_path / "ruler.parquet"
    pd.read_json(DATA / "kvpress_format.jsonl", lines=True).to_parquet(pq)
    a = [s.context_ids for s in kvpress().samples(bpe, 4096, 0)]
    b = [s.context_ids for s in get_task("hf_qa", {"source": str(pq)}).samples(bpe, 4096, 0)]
    assert a == b


def test_chat_template_wraps_the_prompt_and_can_be_turned_off(bpe_chat):
    task = kvpress(n_samples=2)
    s = task.samples(bpe_chat, 4096, 0)[1]  # chat_template "auto": the tokenizer has one
    assert bpe_chat.decode(s.context_ids) == "<|user|>\nA short context about the lake."
    assert bpe_chat.decode(s.question_ids) == "\nWhere?<|end|>\n<|assistant|>\n Answer:"
    assert s.meta["chat_template"] is True
    task.chat_template = "none"
    s = task.samples(bpe_chat, 4096, 0)[1]
    assert bpe_chat.decode(s.context_ids) == "<s>A short context about the lake." and s.meta["chat_template"] is False


def test_nested_fields_narrativeqa_with_rouge(bpe):
    task = get_task("hf_qa", {"source": str(DATA / "narrativeqa.jsonl"), "context_field": "document.text",
                              "question_field": "question.text", "answer_field": "answers.text",
                              "scorer": "rouge_l_f1", "template": "{context}\n\nQuestion: {question}"})
    s = task.samples(bpe, 200, 0)[0]
    assert task.metric == "rouge_l_f1" and len(s.context_ids) == 200
    assert "dragon" in bpe.decode(s.context_ids)  # middle truncation keeps the end of the story
    assert s.references == ["He slew the dragon.", "killed the dragon"]
    assert METRICS[task.metric]("the knight slew the dragon", s.references) > 0.5


def test_narrativeqa_preset_reads_the_same_file(bpe):
    task = get_task("narrativeqa", {"source": str(DATA / "narrativeqa.jsonl")})
    s = task.samples(bpe, 300, 0)[0]
    assert task.metric == "rouge_l_f1" and len(s.context_ids) == 300 and s.meta["truncated"]
    assert s.references == ["He slew the dragon.", "killed the dragon"]
    assert bpe.decode(s.question_ids).endswith("Question: What did the knight do?\nAnswer:")


def test_no_code_path_evaluates_data():
    import ast

    for path in (ROOT / "src" / "kvstudy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}: {node.func.id}()"


def test_helmet_rag_keeps_whole_passages_that_fit(bpe):
    task = get_task("helmet_rag", {"source": str(DATA / "helmet_nq.jsonl")})
    short, long = task.samples(bpe, 600, 0), task.samples(bpe, 3000, 0)
    for s in short + long:
        text = bpe.decode(s.context_ids)
        assert len(s.context_ids) <= (600 if s in short else 3000)
        assert text.count("Document (Title:") == s.meta["n_passages"]
        assert not s.meta["truncated"]
        assert bpe.decode(s.question_ids).endswith("Answer:")
    assert 0 < short[0].meta["n_passages"] < long[0].meta["n_passages"] <= 12
    assert long[0].references == ["Herman Melville", "Melville"]
    assert METRICS[task.metric]("Answer: herman melville.", long[0].references) == 1.0


def test_helmet_rerank_qrels_of_the_shown_passages(bpe):
    task = get_task("helmet_rerank", {"source": str(DATA / "helmet_msmarco.jsonl")})
    s = task.samples(bpe, 5000, 0)[0]
    qrels = json.loads(s.references[0])
    assert len(qrels) == s.meta["n_passages"] == 15 and qrels["d3"] == 2.0
    assert METRICS[task.metric]("Ranking: d3 > d5 > d0", s.references) == 1.0
    assert METRICS[task.metric]("Ranking: d0 > d1 > d5 > d3", s.references) < 0.6
    small = task.samples(bpe, 700, 0)[0]
    assert len(json.loads(small.references[0])) == small.meta["n_passages"] < 15


def test_helmet_icl_balanced_examples_and_label_accuracy(bpe):
    task = get_task("helmet_icl", {"source": str(DATA / "icl_test.jsonl"),
                                   "demo_source": str(DATA / "icl_train.jsonl")})
    samples = task.samples(bpe, 500, 0)
    assert len(samples) == 4
    for s in samples:
        text = bpe.decode(s.context_ids)
        labels = [line.split("label: ")[1] for line in text.splitlines() if line.startswith("label: ")]
        counts = pd.Series(labels).value_counts()
        assert len(labels) == s.meta["n_examples"] >= 4 and counts.max() - counts.min() <= 1
        assert "test message" not in text and bpe.decode(s.question_ids).strip().startswith("test message")
    assert samples[1].references == ["1"] and METRICS[task.metric]("label: 1", ["1"]) == 1.0


@pytest.mark.parametrize("subtask,file,good", [
    ("html_to_tsv", "html_to_tsv.json", lambda s: "```tsv\n" + s.references[0] + "\n```"),
    ("travel_planning", "travel_planning.json", None),
    ("path_traversal", "path_traversal.json", lambda s: "<Route>\n" + s.references[0] + "\n</Route>"),
])
def test_longproc_loaders_and_their_metrics(bpe, subtask, file, good):
    params = {"source": str(DATA / "longproc" / file), "subtask": subtask}
    if subtask == "travel_planning":
        params["demo_file"] = str(DATA / "longproc" / "travel_planning_icl_examples.json")
    task = get_task("longproc", params)
    s = task.samples(bpe, 4000, 0)[0]
    text, q = bpe.decode(s.context_ids), bpe.decode(s.question_ids)
    if subtask == "html_to_tsv":
        assert "<td>Item 39</td>" in text and "tsv" in q and task.metric == "tsv_row_f1"
        pred = good(s)
        assert METRICS[task.metric](pred, s.references) == 1.0
        half = "\n".join(s.references[0].splitlines()[:11])  # header + 10 of 20 rows
        assert METRICS[task.metric]("```tsv\n" + half + "\n```", s.references) == pytest.approx(2 / 3)
    elif subtask == "travel_planning":
        assert "Arriving in Rome" in text and "Helsinki" in q
        with pytest.raises(ValueError, match="estimated_output_tokens"):  # the file's one plan is 500 tokens
            get_task("longproc", params | {"min_output_tokens": 4096, "max_output_tokens": 8192}).samples(bpe, 4000, 0)
        plan = json.load(open(DATA / "longproc" / file))[0]["ground_truth_plan"]
        assert METRICS[task.metric](f"<Plan>\n{plan}\n</Plan>", s.references) == 1.0
        assert METRICS[task.metric](f"<Plan>\n{plan.replace('for 4 days', 'for 3 days')}\n</Plan>", s.references) == 0.0
    else:
        assert "Lille to Abingdon" in text and "from Lille to Augsburg" in q
        assert METRICS[task.metric](good(s), s.references) == 1.0
        first_only = "<Route>\nFrom Lille, take a ferry to Abingdon.\nFrom Abingdon, take a train to Augsburg.</Route>"
        assert METRICS[task.metric](first_only, s.references) == 0.5


def test_hf_qa_job_end_to_end_on_the_tiny_model(tmp_path):
    """A kvpress-format file in the tiny model's words through run_job: the full cache answers."""
    from kvstudy.evaluate import run_job
    from kvstudy.models.tiny import build_tokenizer

    tok = build_tokenizer()
    rows = []
    for s in get_task("kv_retrieval", {"n_samples": 3, "n_pairs": 8}).samples(tok, 200, 0):
        rows.append({"context": tok.decode(s.context_ids[1:]), "question": tok.decode(s.question_ids),
                     "answer_prefix": "", "answer": s.references, "max_new_tokens": 1})
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
           "chat_template": "auto", "task": "qa", "task_kind": "hf_qa",
           "task_params": {"source": str(path), "template": "{context} {question}"}, "length": 256, "seed": 0,
           "press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0, "stop_words": ["."]}
    r = run_job(job, device="cpu")
    assert r["quality"]["n"] == 3 and r["quality"]["score"] == 1.0
    assert r["job"]["chat_template"] == "auto"
    assert all(x["decode_tokens"] == 0 for x in r["samples"])  # the row's max_new_tokens (1) was used
    assert all(x["meta"]["truncated"] is False and x["context_tokens"] <= 256 for x in r["samples"])
    json.dumps(r)  # the raw result (task meta included) is plain JSON
    # the documents are shorter than the length: the full cache is what was prefilled, not the length
    assert r["efficiency"]["kv_tokens_full"] == r["samples"][0]["context_tokens"] == 200
    assert r["efficiency"]["kv_fraction_kept"] == 1.0


def test_config_rejects_bad_task_settings(study):
    study["tasks"] = {"qa": {"kind": "hf_qa", "source": "x.jsonl", "scorer": "nope"}}
    with pytest.raises(ConfigError, match=r"tasks\.qa: scorer 'nope'"):
        validate(study)
    study["tasks"] = {"lp": {"kind": "longproc", "source": "x.json", "subtask": "pseudo"}}
    with pytest.raises(ConfigError, match="subtask"):
        validate(study)
    study["tasks"] = {"niah": {}}
    study["models"]["tiny"]["chat_template"] = "always"
    with pytest.raises(ConfigError, match="chat_template"):
        validate(study)


def test_kvstudy_tasks_lists_every_kind_with_metric(capsys):
    from kvstudy.cli import main
    from kvstudy.tasks import TASKS

    main(["tasks"])
    out = capsys.readouterr().out
    for name, cls in TASKS.items():
        assert f"{name} " in out and f"metric={cls.metric}" in out
    assert "lower is better" in out  # perplexity


def test_hub_ids_go_to_load_dataset_and_remote_code_only_when_asked(monkeypatch):
    import datasets

    from kvstudy.tasks.sources import load_records

    calls = []

    def fake(path, name=None, **kw):
        calls.append((path, name, kw))
        return [{"text": "x"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert load_records("Salesforce/wikitext", "wikitext-103-raw-v1", "test") == [{"text": "x"}]
    path, name, kw = calls[-1]
    assert (path, name, kw["split"]) == ("Salesforce/wikitext", "wikitext-103-raw-v1", "test")
    assert "trust_remote_code" not in kw
    load_records("deepmind/pg19", split="test", trust_remote_code=True)
    assert calls[-1][2]["trust_remote_code"] is True
    with pytest.raises(ValueError, match="no such file"):
        load_records("./missing.jsonl")


def test_chat_template_reaches_the_job_only_when_set(study):
    from kvstudy.grid import jobs

    assert all(j.chat_template is None for j in jobs(validate(study)))  # existing results keep their params
    study["models"]["tiny"]["chat_template"] = "none"
    assert {j.chat_template for j in jobs(validate(study))} == {"none"}


# --- dataset rows: a row without its answer is an error naming it (or skipped and counted); loading errors name
# the task and the file -----------------------------------------------------------------------------------------


def _kvpress_rows() -> list[dict]:
    return [json.loads(line) for line in (DATA / "kvpress_format.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("answer, words", [
    (None, "row 2: answer is null"),
    ("", "row 2: answer is empty"),
    ([], "row 2: answer is an empty list"),
    (["x", None], "row 2: answer is null in the list"),
    ("missing", "row 2: no field 'answer'"),
])
def test_a_row_without_its_answer_is_an_error_naming_it(tmp_path, bpe, answer, words):
    rows = _kvpress_rows()
    if answer == "missing":
        del rows[1]["answer"]
    else:
        rows[1]["answer"] = answer
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError) as e:
        get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)
    assert str(e.value).startswith(f"task hf_qa: source {path}: {words}") and "bad_rows: skip" in str(e.value)
    # skipped and counted, when the study says so: the other rows make the samples
    task = get_task("hf_qa", {"source": str(path), "bad_rows": "skip"})
    samples = task.samples(bpe, 512, 0)
    assert [s.references for s in samples] == [[str(a) for a in r["answer"]] for r in (rows[0], rows[2])]


def test_skipped_rows_are_counted_in_the_log(tmp_path, bpe, capsys):
    rows = _kvpress_rows()
    rows[0]["answer"] = None
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    get_task("hf_qa", {"source": str(path), "bad_rows": "skip"}).samples(bpe, 512, 0)
    assert f"task hf_qa: source {path}: 1 of 3 rows skipped (bad_rows: skip), e.g. row 1: answer is null" in \
        capsys.readouterr().err


@pytest.mark.parametrize("content, words", [
    (b"", "no rows"),
    (b"\n\n", "no rows"),
    (b'{"context": "a"}\n{"context": \n', "line 2: not valid JSON (Expecting value: line 1 column 13)"),
    (b'{"context": "a"}\n\xff\xfe\n', "line 2: not UTF-8 (byte 0xff)"),
    (b'[1, 2]\n', "line 1: not a JSON object (a list)"),
])
def test_loading_errors_name_the_task_and_the_file(tmp_path, bpe, content, words):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)
    assert str(e.value) == f"task hf_qa: source {path}: {words}"


def test_blank_lines_between_rows_are_skipped(tmp_path, bpe):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n\n".join(json.dumps(r) for r in _kvpress_rows()) + "\n\n")
    assert len(get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)) == 3


def test_a_json_file_holds_a_list_of_rows(tmp_path, bpe):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"data": _kvpress_rows()}))
    with pytest.raises(ValueError, match=f"task hf_qa: source {path}: a JSON file of rows holds a list of objects"):
        get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)
    path.write_text(json.dumps(_kvpress_rows()))
    assert len(get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)) == 3


@pytest.mark.parametrize("kind, data, field", [
    ("helmet_rag", "helmet_nq.jsonl", "answers"),
    ("helmet_icl", "icl_test.jsonl", "label"),
])
def test_other_tasks_check_their_answer_field(tmp_path, bpe, kind, data, field):
    rows = [json.loads(line) for line in (DATA / data).read_text().splitlines()]
    rows[-1][field] = None
    path = tmp_path / data
    path.write_text("\n".join(json.dumps(r) for r in rows))
    params = {"source": str(path)} | ({"demo_source": str(DATA / "icl_train.jsonl")} if kind == "helmet_icl" else {})
    with pytest.raises(ValueError, match=f"task {kind}: source {path}: row {len(rows)}: {field} is null"):
        get_task(kind, params).samples(bpe, 1024, 0)


def test_validation_refuses_a_data_file_with_a_bad_row_before_any_job(tmp_path, study, monkeypatch):
    from kvstudy import preflight_cache

    monkeypatch.setattr(preflight_cache, "read", lambda key: None)
    monkeypatch.setattr(preflight_cache, "write", lambda key, report: None)
    rows = _kvpress_rows()
    rows[2]["answer"] = None
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    study["tasks"] = {"qa": {"kind": "hf_qa", "source": str(path), "n_samples": 1}}  # the bad row is the 3rd
    with pytest.raises(ConfigError) as e:
        validate(study, preflight=True)
    assert f"config error: tasks.qa: on model tiny at lengths 256, 512: task hf_qa: source {path}: row 3: answer " \
           "is null" in str(e.value)


# --- HELMET's 2-shot demos for RAG and re-ranking (issue 20.5) ---------------------------------------------------


def _helmet_choice(rows, key, sample_key, shots):
    """HELMET's own demo choice (data.py), with `datasets` as HELMET runs it."""
    from datasets import Dataset

    from kvstudy.tasks.helmet_demos import demo_seed

    shuffled = Dataset.from_list(rows).shuffle(seed=demo_seed(sample_key))
    out, seen = [], set()
    for d in shuffled:
        if d[key] not in seen:
            seen.add(d[key])
            out.append(d)
    return out[:shots]


def _demo_rows(path, n, key, make):
    rows = [make(i) for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.parametrize("sample_key", ["who wrote the novel about the whale", "q1", "some other question"])
def test_helmet_demos_are_the_ones_helmet_picks(sample_key):
    from kvstudy.tasks.helmet_demos import pick

    rows = [{"question": f"question {i % 9}", "i": i} for i in range(20)]  # duplicate questions, as in KILT
    want = _helmet_choice(rows, "question", sample_key, 2)
    got = pick(rows, "question", sample_key, 2)
    assert [d["i"] for d in got] == [d["i"] for d in want] and len({d["question"] for d in got}) == 2


def test_helmet_rag_two_shot_demos_before_the_passages(bpe, tmp_path):
    test_rows = [json.loads(line) for line in (DATA / "helmet_nq.jsonl").read_text().splitlines()]
    base = test_rows[0]
    demos = _demo_rows(tmp_path / "train.jsonl", 6, "question", lambda i: {
        "question": f"demo question {i}", "answers": [f"demo answer {i}", "other"], "ctxs": [{**base["ctxs"][0], "title": "Demo"}]})
    plain = get_task("helmet_rag", {"source": str(DATA / "helmet_nq.jsonl")}).samples(bpe, 1200, 0)
    task = get_task("helmet_rag", {"source": str(DATA / "helmet_nq.jsonl"), "shots": 2,
                                   "demo_file": str(tmp_path / "train.jsonl")})
    shots = task.samples(bpe, 1200, 0)
    assert len(shots) == len(test_rows)
    for s, p, row in zip(shots, plain, test_rows):
        text = bpe.decode(s.context_ids)
        chosen = _helmet_choice(demos, "question", row["question"], 2)  # the rows have no id: keyed by question
        assert s.meta["n_demos"] == 2 and len(s.context_ids) <= 1200
        for d in chosen:  # each demo: its passages, its question, its first answer, ahead of the sample's passages
            assert f"Question: {d['question']}\nAnswer: {d['answers'][0]}" in text
            assert text.index(d["question"]) < text.index(f"Document (Title: {row['ctxs'][0]['title']})")
        assert s.meta["n_passages"] < p.meta["n_passages"]  # the demos take part of the length
    assert get_task("helmet_rag", {"source": str(DATA / "helmet_nq.jsonl"), "shots": 0}).samples(
        bpe, 1200, 0)[0].context_ids == plain[0].context_ids


def test_helmet_rerank_demos_never_share_the_samples_query(bpe, tmp_path):
    base = json.loads((DATA / "helmet_msmarco.jsonl").read_text().splitlines()[0])
    ctxs = [{**c, "text": c["text"][:40]} for c in base["ctxs"][:3]]
    for n in (3, 8):  # per sample (<= 2x the samples) and all samples' queries at once (more)
        rows = _demo_rows(tmp_path / f"demos{n}.jsonl", n, "qid", lambda i: {
            "query": f"demo query {i}", "qid": "q1" if i == 0 else f"dq{i}", "ctxs": ctxs})
        task = get_task("helmet_rerank", {"source": str(DATA / "helmet_msmarco.jsonl"), "shots": 2,
                                          "demo_file": str(tmp_path / f"demos{n}.jsonl")})
        s = task.samples(bpe, 5000, 0)[0]
        text = bpe.decode(s.context_ids)
        pool = [r for r in rows if r["qid"] != base["qid"]]
        for d in _helmet_choice(pool, "qid", base["qid"], 2):
            ranking = " > ".join(c["id"] for c in sorted(ctxs, key=lambda c: c["label"], reverse=True))
            assert f"Query: {d['query']}\nRanking: {ranking}" in text
        assert "demo query 0" not in text and s.meta["n_demos"] == 2  # the sample's own query (q1) is never a demo


def test_demo_shots_need_a_demo_file(study):
    study["tasks"] = {"rag": {"kind": "helmet_rag", "source": str(DATA / "helmet_nq.jsonl"), "shots": 2}}
    with pytest.raises(ConfigError, match=r"tasks\.rag\.demo_file: shots 2 needs HELMET's demo file"):
        validate(study)


def test_truncation_none_runs_a_longer_input_whole(bpe):
    """`truncation: none` (HELMET does not cut LongProc's inputs): an input longer than the length is kept whole and
    says so; the default cuts it to the length."""
    params = {"source": str(DATA / "longproc" / "html_to_tsv.json"), "subtask": "html_to_tsv"}
    cut = get_task("longproc", params).samples(bpe, 300, 0)[0]
    whole = get_task("longproc", params | {"truncation": "none"}).samples(bpe, 300, 0)[0]
    assert len(cut.context_ids) <= 300 and cut.meta["truncated"]
    assert len(whole.context_ids) == whole.meta["original_context_tokens"] > 300 and not whole.meta["truncated"]
    assert whole.question_ids == cut.question_ids


# --- ruler_qa: RULER's qa_1 (SQuAD) / qa_2 (HotpotQA) from small local stand-ins of their files ------------------

def _squad_file(tmp_path, n_articles=6):
    """SQuAD v2's layout: articles of paragraphs of questions, one unanswerable question per paragraph."""
    data = []
    for a in range(n_articles):
        paras = []
        for p in range(3):
            ctx = f"Paragraph {p} of article {a} says the river number {a}{p} flows north near town t{a}x{p}."
            paras.append({"context": ctx, "qas": [
                {"question": f"Which town is by river {a}{p}?", "is_impossible": False,
                 "answers": [{"text": f"t{a}x{p}", "answer_start": 0}]},
                {"question": f"Who swam river {a}{p}?", "is_impossible": True, "answers": []}]})
        data.append({"title": f"article {a}", "paragraphs": paras})
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return str(path)


def _hotpot_file(tmp_path, n=12):
    rows = [{"_id": str(q), "question": f"What joins h{q}a and h{q}b?", "answer": f"bridge{q}",
             "context": [[f"Title {q} {k}", [f"Sentence one of {q}/{k}. ", f"Bridge{q} joins them." if k < 2 else
                                             "Nothing here."]] for k in range(10)]} for q in range(n)]
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps(rows))
    return str(path)


@pytest.mark.parametrize("dataset", ["squad", "hotpotqa"])
def test_ruler_qa_puts_the_gold_documents_among_distractors_up_to_the_length(dataset, tmp_path, bpe):
    source = _squad_file(tmp_path) if dataset == "squad" else _hotpot_file(tmp_path)
    task = get_task("ruler_qa", {"dataset": dataset, "source": source, "n_samples": 4})
    for length in (800, 2000):
        for s in task.samples(bpe, length, seed=0):
            assert len(s.context_ids) + len(s.question_ids) <= length
            text, q = bpe.decode(s.context_ids), bpe.decode(s.question_ids)
            assert text.count("Document ") == s.meta["n_documents"]
            docs = text.split("Document ")[1:]
            gold = [docs[g - 1] for g in s.meta["gold_documents"]]
            assert q.rstrip().endswith("Answer:") and s.meta["question"] in q
            if dataset == "squad":  # the answer is in its paragraph, which is that question's
                assert len(gold) == 1 and s.references[0] in gold[0]
                river = s.meta["question"].split("river ")[1].rstrip("?")
                assert f"river number {river} " in gold[0]
            else:  # all ten paragraphs of the question are its gold documents, as RULER takes them
                assert len(gold) == 10 and any(s.references[0].capitalize() in g for g in gold)
            assert METRICS[task.metric](f" {s.references[0]}.", s.references) == 1.0
    short, long = (task.samples(bpe, n, seed=0) for n in (800, 2000))
    assert sum(s.meta["n_documents"] for s in long) > sum(s.meta["n_documents"] for s in short)


def test_ruler_qa_dev_seeds_ask_other_questions_than_test_seeds(tmp_path, bpe):
    from kvstudy.tuning import dev_seed

    task = get_task("ruler_qa", {"source": _squad_file(tmp_path, 10), "n_samples": 10})
    test = {s.meta["question"] for seed in (0, 1, 2) for s in task.samples(bpe, 600, seed)}
    dev = {s.meta["question"] for seed in (0, 1) for s in task.samples(bpe, 600, dev_seed(seed))}
    assert test and dev and not test & dev
    assert len(test | dev) > 20  # both halves are used, not one question over and over
    again = task.samples(bpe, 600, 0)
    assert [s.context_ids for s in again] == [s.context_ids for s in task.samples(bpe, 600, 0)]


def test_ruler_qa_errors_name_the_file(tmp_path, bpe):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(ValueError, match=f"source {bad}: not squad's JSON"):
        get_task("ruler_qa", {"source": str(bad), "n_samples": 1}).samples(bpe, 400, 0)
    with pytest.raises(ValueError, match="fewer than n_samples 50"):
        get_task("ruler_qa", {"source": _squad_file(tmp_path, 2), "n_samples": 50}).samples(bpe, 400, 0)
    with pytest.raises(ValueError, match="cannot hold the gold documents"):
        get_task("ruler_qa", {"dataset": "hotpotqa", "source": _hotpot_file(tmp_path), "n_samples": 1}).samples(
            bpe, 60, 0)


# --- dev_split: a fixed test part and a disjoint dev part of a dataset's rows, grouped by document ---------------


def _documents_file(tmp_path, n_docs=20, per_doc=3):
    """kvpress-format rows: `per_doc` questions on each of `n_docs` documents (LooGLE asks many per document)."""
    rows = [{"context": f"Document {d} tells of place{d}.", "question": f"\nQ{q} on {d}?", "answer_prefix": "",
             "answer": f"place{d}", "max_new_tokens": 4} for d in range(n_docs) for q in range(per_doc)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _docs_of(task, bpe, seed):
    return {s.references[0] for s in task.samples(bpe, 4096, seed)}


def test_dev_split_parts_are_disjoint_by_document_and_sized_as_configured(tmp_path, bpe):
    from kvstudy.tuning import dev_seed

    path = _documents_file(tmp_path)
    task = get_task("hf_qa", {"source": str(path), "n_samples": 1000, "dev_split": {"fraction": 0.3}})
    test, dev = task.samples(bpe, 4096, 0), task.samples(bpe, 4096, dev_seed(0))
    test_docs, dev_docs = {s.references[0] for s in test}, {s.references[0] for s in dev}
    assert not test_docs & dev_docs and len(test_docs | dev_docs) == 20  # every document, on one side only
    assert (len(dev_docs), len(test_docs)) == (6, 14) and (len(dev), len(test)) == (18, 42)  # 30% of 20 documents
    assert len({s.meta["cluster"] for s in dev}) == 6  # the three questions of a document stay together
    # every test seed reads the test part, every dev seed the dev part (shuffled choices included)
    shuffled = get_task("hf_qa", {"source": str(path), "n_samples": 5, "shuffle": True, "dev_split": {"fraction": 0.3}})
    for seed in (1, 2, 7):
        assert _docs_of(shuffled, bpe, seed) <= test_docs and _docs_of(shuffled, bpe, dev_seed(seed)) <= dev_docs
    # another split seed draws other documents; `by` groups by another field (here: one group per question)
    other = get_task("hf_qa", {"source": str(path), "n_samples": 1000, "dev_split": {"fraction": 0.3, "seed": 1}})
    assert _docs_of(other, bpe, dev_seed(0)) != dev_docs
    by_q = get_task("hf_qa", {"source": str(path), "n_samples": 1000, "dev_split": {"fraction": 0.5, "by": "question"}})
    assert len(by_q.samples(bpe, 4096, dev_seed(0))) == 30


def test_dev_split_is_the_same_in_another_process(tmp_path, bpe):
    """The parts come from a sha256, not Python's salted hash(): a fresh interpreter with another PYTHONHASHSEED
    splits the same way."""
    import os
    import subprocess
    import sys

    path = _documents_file(tmp_path)
    params = {"source": str(path), "n_samples": 1000, "dev_split": {"fraction": 0.3}}
    code = ("import json, sys; from kvstudy.tasks import get_task; from kvstudy.tasks.dev_split import part; "
            f"t = get_task('hf_qa', {params!r}); rows = t.records(0); "
            "print(json.dumps(sorted(r['answer'] for r in part(rows, t.dev_split, 1_000_000, 'x'))))")
    mine = sorted(_docs_of(get_task("hf_qa", params), bpe, 1_000_000))
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}).stdout
        assert sorted(set(json.loads(out))) == mine


def test_dev_split_errors_name_the_task(tmp_path, bpe):
    path = _documents_file(tmp_path, n_docs=2)
    with pytest.raises(ValueError, match=r"task hf_qa: source .*docs\.jsonl: dev_split: 2 group\(s\) by 'context' "
                                         r"at fraction 0\.1 leave the dev part empty"):
        get_task("hf_qa", {"source": str(path), "dev_split": {"fraction": 0.1}}).samples(bpe, 4096, 0)
    with pytest.raises(ValueError, match="dev_split.by: a row has no field 'document.text'"):
        get_task("hf_qa", {"source": str(path), "dev_split": {"fraction": 0.5, "by": "document.text"}}).samples(
            bpe, 4096, 0)
