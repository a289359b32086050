"""Prompting per task (issue 20, point 1): chat template, stop words, a reasoning model's thoughts and its budget.

The end-to-end tests use a random-weight Llama (tests/archs.py) with the BPE tokenizer of tests/bpe.py whose chat
template ends the prompt with `<think>\\n`, as DeepSeek-R1's templates do, and run real eval jobs through
`kvstudy.grid.jobs` -> `kvstudy.evaluate.run_job`. Random weights cannot be made to say "reasoning. </think>
answer", so one job forces its greedy tokens (a forward hook sets the logits): everything else (prompt, stop
words, stop ids, decoding, answer extraction, scoring) is the engine's own.
"""

from __future__ import annotations

import pytest
import torch

from kvstudy.config import validate
from kvstudy.grid import jobs
from kvstudy.tasks import TASKS, get_task
from kvstudy.tasks.thinking import opened_by, split

THINK_CHAT = ("{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>\n<think>\n{% endif %}")


@pytest.mark.parametrize("text, opened, answer, thoughts", [
    ("reasoning. </think> answer", True, "answer", {"chars": 11, "closed": True}),
    ("<think>a</think>b</think> last", False, "last", {"chars": 17, "closed": True}),  # the last end marker
    ("still thinking, cut by the budget", True, "", {"chars": 33, "closed": False}),
    ("<think>opened in the output", False, "", {"chars": 27, "closed": False}),
    ("[THINK]x[/THINK] magistral", False, "magistral", {"chars": 8, "closed": True}),
    ("a plain answer", False, "a plain answer", None),
])
def test_split_scores_what_follows_the_thoughts(text, opened, answer, thoughts):
    markers = TASKS["niah"].thinking_end
    assert split(text, markers, opened) == (answer, thoughts)


def test_a_prompt_opens_thoughts_only_when_it_ends_inside_them():
    markers = ("</think>",)
    assert opened_by("<|assistant|>\n<think>\n", markers)
    assert not opened_by("<|assistant|>\n", markers)
    assert not opened_by("<think>earlier</think> <|assistant|>\n", markers)


def test_helmet_defaults_no_chat_template_newline_stop():
    """HELMET runs ICL, RAG, recall (json_kv) and rerank without a chat template and stops at newline only; cite
    and LongProc use the template and stop at end of sequence; others keep the study's stop words."""
    for kind in ("helmet_icl", "helmet_rag", "helmet_rerank", "json_kv"):
        assert (TASKS[kind].chat_template, TASKS[kind].stop_words) == ("none", ("\n",)), kind
    for kind in ("helmet_cite", "longproc"):
        assert (TASKS[kind].chat_template, TASKS[kind].stop_words) == ("auto", ()), kind
    assert (TASKS["niah"].chat_template, TASKS["niah"].stop_words) == ("auto", None)


def test_json_kv_prompt_is_plain_text_by_default(tmp_path):
    from bpe import train_bpe

    tok = train_bpe(chat=True)
    plain = get_task("json_kv", {"n_samples": 1}).samples(tok, 512, 0)[0]
    chat = get_task("json_kv", {"n_samples": 1, "chat_template": "auto"}).samples(tok, 512, 0)[0]
    assert "<|user|>" not in tok.decode(plain.context_ids) and "<|assistant|>" not in tok.decode(plain.question_ids)
    assert tok.decode(chat.question_ids).endswith("<|assistant|>\n")


def test_settings_reach_the_jobs_and_the_model_setting_none_wins(study):
    study["tasks"] = {"jkv": {"kind": "json_kv", "n_samples": 2},
                      "niah": {"n_samples": 2},
                      "niah_plain": {"kind": "niah", "n_samples": 2, "chat_template": "none", "stop_words": ["\n"]},
                      "jkv_chat": {"kind": "json_kv", "n_samples": 2, "chat_template": "auto", "stop_words": []}}
    by = lambda cfg: {j.task: (j.chat_template, list(j.stop_words)) for j in jobs(validate(cfg))}  # noqa
    assert by(study) == {"jkv": ("none", ["\n"]), "niah": (None, [".", "\n"]), "niah_plain": ("none", ["\n"]),
                         "jkv_chat": (None, [])}
    study["models"]["tiny"]["chat_template"] = "none"
    assert {v[0] for v in by(study).values()} == {"none"}


@pytest.mark.parametrize("key, value, words", [
    ("chat_template", "always", "is not one of"),
    ("stop_words", "\n", "is not of type"),
    ("thinking_end", [], None),  # an empty list is allowed: nothing is stripped
    ("thinking_max_new_tokens", -1, "less than the minimum"),
])
def test_bad_prompting_settings_are_refused_naming_the_key(study, key, value, words):
    from kvstudy.config import ConfigError

    study["tasks"]["niah"][key] = value
    if words is None:
        validate(study)
        return
    with pytest.raises(ConfigError, match=rf"tasks\.niah\.{key}: .*{words}"):
        validate(study)


# --- a random-weight model whose chat template ends the prompt with <think>\n ---------------------------------------

@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    from archs import make_model
    from transformers import AutoTokenizer

    path = make_model("llama", tmp_path_factory.mktemp("thinker"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = THINK_CHAT
    tok.save_pretrained(path)
    return path


def _study(path, **task):
    return {"models": {"r1": {"path": path}}, "lengths": [192], "presses": [{"method": "no_press"}],
            "eval": {"device": "cpu"},
            "tasks": {"t": {"kind": "niah", "n_samples": 2, "max_new_tokens": 40, **task}}}


def _check_schema(raw):
    import json

    import jsonschema

    from kvstudy.rawcheck import SCHEMA_PATH

    jsonschema.validate(json.loads(json.dumps(raw)), json.loads(SCHEMA_PATH.read_text()))


def _run(config):
    from kvstudy.evaluate import run_job

    (job,) = jobs(validate(config))
    return job, run_job(job, device="cpu")


def test_thoughts_are_not_scored_answer_after_think_is(thinker, monkeypatch):
    """"reasoning. </think> ANSWER" scores the answer with the task's stop words ([]); with "." as a stop word the
    generation ends inside the thoughts and nothing is scored as the answer (not the first sentence of them)."""
    import kvstudy.evaluate as ev

    task = get_task("niah", {"n_samples": 2})
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(thinker)
    samples = task.samples(tok, 192, 0)
    assert tok.decode(samples[0].question_ids).endswith("<|assistant|>\n<think>\n")
    refs = [s.references[0] for s in samples]
    answers = {tuple(s.question_ids): f"reasoning. </think> {s.references[0]}" for s in samples}
    load = ev.load_model

    def forcing_load(*args):
        model, tokenizer = load(*args)
        state = {"script": None, "k": 0}

        def hook(module, args, kwargs, out):
            ids = kwargs["input_ids"][0].tolist()
            if len(ids) > 1:  # the warm-up, or a sample's question: its answer's script starts
                text = answers.get(tuple(ids))
                state.update(k=0, script=text and tokenizer.encode(text, add_special_tokens=False) + [1])
            else:
                state["k"] += 1
            if state["script"]:
                forced = torch.full_like(out.logits[:, -1], -1e9)
                forced[:, state["script"][min(state["k"], len(state["script"]) - 1)]] = 0.0
                out.logits[:, -1] = forced
            return out

        model.register_forward_hook(hook, with_kwargs=True)
        return model, tokenizer

    monkeypatch.setattr(ev, "load_model", forcing_load)
    job, raw = _run(_study(thinker, stop_words=[]))
    assert job.stop_words == () and job.chat_template is None  # the template is used (auto)
    rows = raw["samples"]
    assert [r["answer"] for r in rows] == refs and [r["thinking"]["closed"] for r in rows] == [True, True]
    assert all(r["prediction"].startswith("reasoning. </think>") for r in rows)
    assert raw["quality"]["score"] == 1.0
    _check_schema(raw)

    job, raw = _run(_study(thinker, stop_words=["."]))  # stops at "reasoning." inside the thoughts
    rows = raw["samples"]
    assert [r["prediction"] for r in rows] == ["reasoning", "reasoning"]
    assert [(r["answer"], r["thinking"]["closed"]) for r in rows] == [("", False), ("", False)]
    assert raw["quality"]["score"] == 0.0


def test_real_job_the_settings_reach_the_model(thinker):
    """An unforced eval job of the thinking model: the prompt opens the thoughts, the model gets
    `thinking_max_new_tokens`, and what it wrote (never closing them) is kept apart and not scored."""
    job, raw = _run(_study(thinker, stop_words=[], max_new_tokens=3, thinking_max_new_tokens=12))
    assert raw["status"] == "ok" and raw["job"]["task_resolved"]["thinking_max_new_tokens"] == 12
    for r in raw["samples"]:
        assert 3 < r["decode_tokens"] + 1 <= 12  # beyond max_new_tokens: the thinking budget
        assert r["thinking"] == {"chars": len(r["prediction"]), "closed": False} and r["answer"] == ""
        assert r["score"] == 0.0
    _check_schema(raw)
    # the same task without the chat template: the model continues the text, no thinking budget, nothing stripped
    job, raw = _run(_study(thinker, stop_words=[], max_new_tokens=3, thinking_max_new_tokens=12,
                           chat_template="none"))
    assert job.chat_template == "none" and raw["job"]["chat_template"] == "none"
    for r in raw["samples"]:
        assert r["decode_tokens"] + 1 <= 3 and "thinking" not in r and r["answer"] == r["prediction"]
