"""HELMET cite (ALCE): the citation recall/precision algorithm with a rule-based judge, the T5 judge code path on a
tiny random T5 made here, the task's prompts and lengths on small ALCE-format files, one eval job end to end."""

import json

import jsonschema
import pytest
import torch

from conftest import ROOT, TINY
from kvstudy.config import ConfigError, validate
from kvstudy.metrics import METRICS
from kvstudy.metrics.cite import citation_recall_precision, cited, remove_citations, split_sentences
from kvstudy.tasks import get_task
from kvstudy.schemas import DIR as SCHEMAS

DATA = ROOT / "tests" / "data"
FACTS = {"alpha", "beta", "gamma", "delta"}
P = [{"title": "A", "text": "alpha is here"}, {"title": "B", "text": "beta is here"},
     {"title": "C", "text": "gamma and alpha"}, {"title": "D", "text": "nothing"}]


HUB = {"org/judge"}  # the model ids the stand-in hub has


@pytest.fixture(autouse=True)
def hub(monkeypatch):
    """No test reaches the hub: a job's start asks it for a judge that is not in the local cache (nli.check)."""
    import huggingface_hub

    def model_info(repo_id, **kw):
        if repo_id not in HUB:
            raise ValueError(f"404 Client Error: Repository Not Found for url: {repo_id}")
        return {"id": repo_id}

    monkeypatch.setattr(huggingface_hub, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def rule_judge(calls=None):
    """Entails when every fact word of the hypothesis is in the premise (and the hypothesis names one)."""
    def entails(premise: str, hypothesis: str) -> bool:
        if calls is not None:
            calls.append((premise, hypothesis))
        need = {w.strip(".,").lower() for w in hypothesis.split()} & FACTS
        return bool(need) and need <= set(premise.lower().replace("\n", " ").split())
    return entails


def rp(answer, **kw):
    return citation_recall_precision(answer, P, rule_judge(), **kw)


def test_supported_sentence_scores_one_and_a_missing_or_wrong_citation_zero():
    assert rp("Alpha holds here [1].") == (1.0, 1.0)
    assert rp("Alpha holds here.") == (0.0, 0.0)  # no citation: unsupported, nothing to be precise about
    assert rp("Alpha holds here [2].") == (0.0, 0.0)  # the cited passage does not entail it
    assert rp("Alpha holds here [9].") == (0.0, 0.0)  # past the passages shown
    assert rp("Alpha holds here [1]. Beta holds too.") == (0.5, 1.0)  # one of two sentences supported


def test_an_unnecessary_citation_lowers_precision_only():
    assert rp("Alpha holds here [1][2].") == (1.0, 0.5)  # [2] adds nothing: [1] alone entails
    assert rp("Alpha and beta hold [1][2].") == (1.0, 1.0)  # each needed: neither alone, nor the other, entails
    # [1] and [3] each entail alone: both count as needed (ALCE's condition A), [2] is not needed
    assert rp("Alpha holds [1][3][2].") == (1.0, pytest.approx(2 / 3))
    assert rp("Alpha and beta hold [1].") == (0.0, 0.0)  # joint set does not entail: no citation counts


def test_at_most_three_citations_are_read():
    assert rp("Alpha and beta hold [4][3][4][2].") == (0.0, 0.0)  # [2] is the 4th citation: dropped
    assert rp("Alpha and beta hold [4][3][2].")[0] == 1.0


def test_the_judge_sees_formatted_passages_and_the_sentence_without_citations():
    calls = []
    citation_recall_precision("Alpha holds here [1][2]. Beta too [2].", P, rule_judge(calls))
    assert calls[0] == ("Title: A\nalpha is here\nTitle: B\nbeta is here", "Alpha holds here.")
    assert all("[" not in h for _, h in calls)


def test_qampari_claims_are_the_listed_answers_with_the_question():
    calls = []
    rec, prec = citation_recall_precision("alpha [1], beta [1], gamma [3].", P, rule_judge(calls),
                                          qampari_question="Which letters?")
    assert (rec, prec) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert [h for _, h in calls] == ["Which letters? alpha", "Which letters? beta", "Which letters? gamma"]


# NLTK's PunktSentenceTokenizer (nltk 3.10.4) on each answer, with cite.py's abbreviations as its abbreviation list
PUNKT = [
    ('Melville wrote it.[1] It was published in 1851 [2].',
     ['Melville wrote it.', '[1] It was published in 1851 [2].']),
    ('It is big. and round [1].',
     ['It is big.', 'and round [1].']),
    ('Herman Melville wrote Moby-Dick [1]. It was published in 1851 [1][2].',
     ['Herman Melville wrote Moby-Dick [1].', 'It was published in 1851 [1][2].']),
    ('Dr. Who is a show [1]. J. K. Rowling wrote it [2].',
     ['Dr. Who is a show [1].', 'J. K. Rowling wrote it [2].']),
    ('The U.S. army won [1]. It was 1945.',
     ['The U.S. army won [1].', 'It was 1945.']),
    ('He said "yes." Then he left [3].',
     ['He said "yes."', 'Then he left [3].']),
    ('It costs approx. 5 dollars [1]. That is cheap.',
     ['It costs approx. 5 dollars [1].', 'That is cheap.']),
    ('Wait... what happened [2]? Nobody knows!',
     ['Wait... what happened [2]?', 'Nobody knows!']),
    ('The answer is 3.5 meters [1]. See fig. 2 for more.',
     ['The answer is 3.5 meters [1].', 'See fig. 2 for more.']),
    ('It was built in 1831. 2 years later it burned [1].',
     ['It was built in 1831.', '2 years later it burned [1].']),
    ('First sentence [1]! Second one? (Third one.) Fourth [2].',
     ['First sentence [1]!', 'Second one?', '(Third one.)', 'Fourth [2].']),
    ('It ended (in 1851). The end [1].',
     ['It ended (in 1851).', 'The end [1].']),
]


@pytest.mark.parametrize("text, sentences", PUNKT)
def test_sentences_are_split_as_punkt_splits_them(text, sentences):
    assert split_sentences(text) == sentences


def test_sentences_citations_and_answer_metrics():
    text = "Dr. Smith met J. K. Rowling in the U.S. in 1999 [1]. Then she left [2][3]! Ok. Why? [1]"
    assert split_sentences(text) == ["Dr. Smith met J. K. Rowling in the U.S. in 1999 [1].", "Then she left [2][3]!",
                                     "Ok.", "Why?", "[1]"]  # as Punkt: a citation after the stop starts a new one
    assert cited("Then [2][13] and [3, 4].") == [1, 12, 2]
    assert remove_citations("Alpha holds [1][2].") == "Alpha holds."
    refs = [json.dumps(["Herman Melville", "Melville"]), json.dumps(["1851"])]
    assert METRICS["alce_str_em"]("It was [1] Melville.", refs) == 0.5
    assert METRICS["alce_str_em"]("Melville, in 1851 [2].", refs) == 1.0
    answers = [json.dumps([x]) for x in "a1 b2 c3 d4 e5 f6 g7".split()]
    assert METRICS["qampari_rec_top5"]("a1 [1], b2 [2], zz.", answers) == pytest.approx(2 / 5)
    assert METRICS["qampari_rec_top5"]("a1, b2, c3, d4, e5, f6", answers) == 1.0  # capped at 5
    assert METRICS["qampari_rec_top5"]("a1 b2", answers) == 0.0  # answers are matched whole, not as substrings


# --- the T5 judge code path, on a tiny T5 made here ---

def make_judge(path):
    """A random 1-layer T5 whose final norm is zeroed: every logit is 0, so greedy decoding always picks id 0,
    which is the token `1` in this tokenizer. Saved with its tokenizer like a hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {w: i for i, w in enumerate(["1", "0", "<pad>", "</s>", "<unk>", "premise:", "hypothesis:", "Title:"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                   pad_token_id=2, eos_token_id=3, decoder_start_token_id=2)
    model = T5ForConditionalGeneration(cfg)
    with torch.no_grad():
        model.decoder.final_layer_norm.weight.zero_()
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return make_judge(tmp_path_factory.mktemp("judge"))


def test_t5_judge_loads_and_answers_exactly_one(judge_dir):
    from kvstudy.metrics.nli import NLIJudge

    yes = NLIJudge(judge_dir, "float32", "cpu", max_new_tokens=1, sanity=False)  # decodes "1": entails
    assert yes("Title: A\nalpha", "alpha holds") is True and yes.calls == 1
    assert yes("Title: A\nalpha", "alpha holds") is True and yes.calls == 1  # cached
    no = NLIJudge(judge_dir, "float32", "cpu", sanity=False)  # decodes "1111111111": not the answer "1"
    assert no("Title: A\nalpha", "alpha holds") is False
    assert citation_recall_precision("Alpha [1].", P, yes) == (1.0, 1.0)
    assert citation_recall_precision("Alpha [1].", P, no) == (0.0, 0.0)


def test_a_judge_that_always_says_yes_or_always_no_is_refused(judge_dir):
    """Either would score every citation the same without an error; a judge is asked a sure yes and a sure no
    when it loads."""
    from kvstudy.metrics.nli import NLIJudge

    with pytest.raises(ValueError, match=r"judges no for premise 'The sky is blue\.' hypothesis 'The sky is blue"):
        NLIJudge(judge_dir, "float32", "cpu")
    with pytest.raises(ValueError, match=r"judges yes for premise .*Paris"):
        NLIJudge(judge_dir, "float32", "cpu", max_new_tokens=1)


def test_missing_judge_is_a_config_error_or_one_line_naming_task_and_judge(tmp_path, study):
    study["tasks"] = {"cite": {"kind": "helmet_cite", "source": str(DATA / "alce_asqa.json"), "shots": 0,
                               "judge": str(tmp_path / "no_judge")}}
    with pytest.raises(ConfigError, match=r"^config error: tasks\.cite\.judge: .*no_judge"):
        validate(study)
    study["tasks"]["cite"].update(judge=TINY.replace("tiny", "nope"))
    with pytest.raises(ConfigError, match=r"tasks\.cite\.judge"):
        validate(study)
    study["tasks"]["cite"].update(judge="google/t5_xxl_true_nli_mixture", shots=2)  # hub id: not checked offline
    with pytest.raises(ConfigError, match=r"tasks\.cite\.demo_file: shots 2"):
        validate(study)
    study["tasks"]["cite"].update(demo_file="data/helmet/prompts/asqa_revised.json")  # data arrives later: valid
    validate(study)
    study["tasks"]["cite"].update(judge_dtype="float16")
    with pytest.raises(ConfigError, match=r"tasks\.cite\.judge_dtype: 'float16'"):
        validate(study)
    study["tasks"]["cite"].update(judge_dtype="bfloat16")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # exists, cannot load
    task = get_task("helmet_cite", {"source": str(DATA / "alce_asqa.json"), "shots": 0, "judge": str(broken),
                                    "judge_dtype": "float32"})
    with pytest.raises(RuntimeError) as e:
        task.judge_rows([{"id": "0", "prediction": "x", "references": ["[]"]}], "cpu", "cite")
    assert str(e.value).startswith(f"task 'cite': judge '{broken}' could not be loaded") and "\n" not in str(e.value)


# --- the task: prompts, passages, lengths ---

def test_cite_samples_fill_the_length_with_numbered_passages_and_demos(tiny):
    _, tok = tiny
    task = get_task("helmet_cite", {"source": str(DATA / "alce_asqa.json"), "demo_file": str(DATA / "alce_demos.json"),
                                    "num_docs": 6, "judge": "org/judge"})
    for length in (200, 300):
        samples = task.samples(tok, length, 0)
        assert len(samples) == 3
        assert all(len(s.context_ids) == length and s.meta["truncated"] for s in samples)  # passages cut at the right
    fit = get_task("helmet_cite", {"source": str(DATA / "alce_asqa.json"), "demo_file": str(DATA / "alce_demos.json"),
                                   "judge": "org/judge"})
    short, long = fit.samples(tok, 250, 0), fit.samples(tok, 400, 0)
    assert all(len(s.context_ids) <= 250 and not s.meta["truncated"] for s in short)
    assert 0 < short[0].meta["n_passages"] < long[0].meta["n_passages"] == 6
    assert long[1].references == ['["1209"]', '["1831"]'] and long[0].meta["n_demos"] == 2
    assert fit._shown["1"][1][0]["title"] == "Old bridge" and len(fit._shown["1"][1]) == 6


def test_cite_prompt_is_helmets(tiny):
    from bpe import train_bpe

    tok = train_bpe()
    task = get_task("helmet_cite", {"source": str(DATA / "alce_asqa.json"), "demo_file": str(DATA / "alce_demos.json"),
                                    "shots": 1, "judge": "org/judge"})
    s = task.samples(tok, 3000, 0)[0]
    text, q = tok.decode(s.context_ids), tok.decode(s.question_ids)
    demo, rest = text.split("\n\n\n")
    assert demo.startswith("<s>Instruction: Write an accurate") and "\n\nAnswer: " in demo
    assert rest.startswith("Instruction: Write an accurate")
    assert "Question: Who wrote the novel about the white whale?\n\nDocument [1](Title: Moby-Dick): Moby-Dick" in rest
    assert "\n\nDocument [6](Title: Ships): The Pequod" in rest and q == "\n\nAnswer:"
    chat = train_bpe(chat=True)
    qa = get_task("helmet_cite", {"source": str(DATA / "alce_qampari.json"), "alce_dataset": "qampari", "shots": 0,
                                  "judge": "org/judge"}).samples(chat, 3000, 0)
    assert chat.decode(qa[0].context_ids).startswith("<|user|>\nInstruction: Provide a list of accurate answers")
    assert chat.decode(qa[0].question_ids) == "<|end|>\n<|assistant|>\n"  # HELMET: no `Answer:` in chat mode
    assert qa[1].references == ['["Avon"]', '["Severn"]']


# --- one eval job end to end ---

def test_cite_job_end_to_end_with_a_tiny_judge(judge_dir, monkeypatch):
    import weakref

    from kvstudy import evaluate
    from kvstudy.evaluate import run_job
    from kvstudy.metrics import nli
    from kvstudy.tasks.helmet_cite import HelmetCite

    loaded, judged = [], []
    load, judge_rows = evaluate.load_model, HelmetCite.judge_rows

    def load_and_watch(*a, **kw):
        model, tok = load(*a, **kw)
        loaded.append(weakref.ref(model))
        return model, tok

    def judge_after_free(self, *a, **kw):
        judged.append(loaded[0]() is None)  # the evaluated model is gone when the judge loads
        return judge_rows(self, *a, **kw)

    monkeypatch.setattr(evaluate, "load_model", load_and_watch)
    monkeypatch.setattr(HelmetCite, "judge_rows", judge_after_free)
    monkeypatch.setattr(nli, "SANITY", ())  # the tiny T5 always says no (the T5 code path is what is tested here)

    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa", "task": "cite",
           "task_kind": "helmet_cite", "length": 256, "seed": 0, "press": "knorm-cr0.50", "method": "knorm",
           "params": {}, "compression_ratio": 0.5, "stop_words": [],
           "task_params": {"source": str(DATA / "alce_asqa.json"), "demo_file": str(DATA / "alce_demos.json"),
                           "max_new_tokens": 6, "judge": judge_dir, "judge_dtype": "float32"}}
    r = run_job(job, device="cpu")
    jsonschema.validate(r, json.loads((SCHEMAS / "result.schema.json").read_text()))
    q = r["quality"]
    assert r["status"] == "ok" and q["metric"] == "alce_cite" and q["n"] == 3
    assert q["judge"]["model"] == judge_dir and set(q["sub_scores"]) == {"alce_str_em", "citation_rec", "citation_prec"}
    for row in r["samples"]:
        # the tiny model writes no `[n]` (not in its vocabulary): no citation, the score is correctness / 3
        assert row["citation_rec"] == row["citation_prec"] == 0.0
        assert row["score"] == pytest.approx(row["alce_str_em"] / 3)
        assert row["alce_str_em"] == METRICS["alce_str_em"](row["prediction"], row["references"])
    # no stop at "." or a new line: the answer may run over sentences (6 tokens unless end of sequence)
    assert any(x["decode_tokens"] == 5 for x in r["samples"])
    assert q["score"] == pytest.approx(sum(x["score"] for x in r["samples"]) / 3)
    assert judged == [True]


class FactJudge:
    """Stands in for kvstudy.metrics.nli.NLIJudge: entails when every fact word of the hypothesis is in the premise
    (words as lower-case runs of letters, digits and hyphens, so "Melville's" has "melville")."""

    FACTS = {"melville", "moby-dick", "1851", "1819", "typee", "omoo", "redburn"}

    def __init__(self, judge, dtype, device):
        self.calls = 0

    def __call__(self, premise, hypothesis):
        import re

        self.calls += 1
        need = set(re.findall(r"[a-z0-9-]+", hypothesis.lower())) & self.FACTS
        return bool(need) and need <= set(re.findall(r"[a-z0-9-]+", premise.lower()))

    def close(self):
        pass


@pytest.mark.parametrize("dataset, answer, rec, prec", [
    # [1] Moby-Dick (Melville, 1851), [2] Whaling, [3] Melville (born 1819): 3 sentences, 4 citations;
    # "It appeared in 1851" needs [1] only, so its [2] is an unnecessary citation
    ("asqa", "<think>Nantucket? [2]</think>Moby-Dick was written by Herman Melville [1]. It appeared in 1851 [1][2]. "
             "Melville was born in 1819 [2].", 2 / 3, 2 / 4),
    # [1] Moby-Dick, [2] Typee, [3] Omoo: each answer is a claim with the question (which names Melville)
    ("qampari", "Moby-Dick [1], Typee [2], Redburn [3].", 2 / 3, 2 / 3),
])
def test_judge_rows_scores_the_citations_of_generated_answers(tiny, monkeypatch, dataset, answer, rec, prec):
    """The task's own path from a generated row to its scores: the passages shown for that sample (by id), the
    question for QAMPARI claims, thoughts stripped, correctness with the dataset's metric."""
    from kvstudy.metrics import nli

    _, tok = tiny
    monkeypatch.setattr(nli, "NLIJudge", FactJudge)
    task = get_task("helmet_cite", {"source": str(DATA / f"alce_{dataset}.json"), "alce_dataset": dataset,
                                    "shots": 0, "num_docs": 4, "judge": "org/judge"})
    samples = task.samples(tok, 1000, 0)
    sample = next(s for s in samples if task._shown[s.id][1][0]["title"] == "Moby-Dick")
    rows = [{"id": sample.id, "prediction": answer, "references": sample.references}]
    extra = task.judge_rows(rows, "cpu", "cite")
    row, correctness = rows[0], "alce_str_em" if dataset == "asqa" else "qampari_rec_top5"
    assert (row["citation_rec"], row["citation_prec"]) == (pytest.approx(rec), pytest.approx(prec))
    text = answer.rsplit("</think>", 1)[-1]
    assert row[correctness] == METRICS[correctness](text, sample.references) > 0
    assert row["score"] == pytest.approx((row[correctness] + rec + prec) / 3)
    assert extra["sub_scores"]["citation_rec"] == pytest.approx(rec) and extra["judge"]["calls"] > 0


def test_a_judge_that_fails_its_check_stops_the_job_with_one_line(judge_dir, tiny):
    _, tok = tiny
    task = get_task("helmet_cite", {"source": str(DATA / "alce_asqa.json"), "shots": 0, "judge": judge_dir,
                                    "judge_dtype": "float32"})
    task.samples(tok, 400, 0)
    with pytest.raises(RuntimeError) as e:
        task.judge_rows([{"id": "0", "prediction": "Melville [1].", "references": ['["Melville"]']}], "cpu", "cite")
    assert str(e.value).startswith(f"task 'cite': judge '{judge_dir}' could not be loaded: judges no for premise")
    assert "\n" not in str(e.value)


def test_job_start_checks_the_judge_and_the_demo_file_before_generation(tiny, monkeypatch):
    """A judge that cannot load after generation would throw the generation away: at job start a hub id must be
    in the local cache, or on the hub (online), and the demo file must exist."""
    from huggingface_hub import constants

    _, tok = tiny
    params = {"source": str(DATA / "alce_asqa.json"), "shots": 0, "judge": "org/judge"}
    get_task("helmet_cite", params).samples(tok, 400, 0)  # online, on the hub
    with pytest.raises(ValueError, match="judge 'org/judge-typo': .*not in the local hub cache and the hub does not "
                                         "give it: 404 Client Error"):
        get_task("helmet_cite", params | {"judge": "org/judge-typo"}).samples(tok, 400, 0)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="judge 'org/judge': .*not in the local hub cache and the hub is offline"):
        get_task("helmet_cite", params).samples(tok, 400, 0)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ValueError, match="demo_file nope.json: no such file"):
        get_task("helmet_cite", params | {"shots": 2, "demo_file": "nope.json"}).samples(tok, 400, 0)
