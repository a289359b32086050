"""LooGLE (shortdep_qa, shortdep_cloze, longdep_qa) as hf_qa tasks on kvpress's hub format (simonjegou/loogle):
its metrics (kvpress's evaluation/benchmarks/loogle/calculate_metrics.py) on hand-worked examples, and the task on
local stand-in files of the same format (tests/data/loogle)."""

import json
import math

import pytest

from bpe import train_bpe
from conftest import ROOT
from kvstudy.metrics import METRICS, score_with_detail
from kvstudy.metrics.loogle import bleu, cloze_matches, rouge_recall
from kvstudy.tasks import get_task

DATA = ROOT / "tests" / "data" / "loogle"


def test_bleu_is_nltk_sentence_bleu_with_one_order():
    # unigrams: the x2 (ref has 2), cat x2 (ref has 1) -> 3 of 4 clipped; 4 words against 6: penalty exp(1 - 6/4)
    assert bleu("the cat sat on the mat", "the cat the cat", 1) == pytest.approx(0.75 * math.exp(-0.5))
    assert bleu("a b c d e", "a b c d e f", 4) == pytest.approx(2 / 3)  # abcd, bcde of abcd, bcde, cdef; 6 > 5
    assert bleu("a b c d e", "a b c", 4) == 0.0  # no 4-gram (nltk: 2.2e-308)
    assert bleu("a b", "", 1) == bleu("a b", "c d", 1) == 0.0


def test_rouge_recall_is_the_rouge_packages():
    # sentences split at "."; distinct reference n-grams: the cat sat the dog ran -> 5 words, 5 bigrams
    got = rouge_recall("the cat sat. the dog ran", "the cat ran")
    # rouge-L: LCS(the cat sat, the cat ran) = the cat; LCS(the dog ran, the cat ran) = the ran -> {the, cat, ran}
    assert got == pytest.approx({"rouge1": 3 / 5, "rouge2": 1 / 5, "rougeL": 3 / 5})
    assert rouge_recall("Paris. ", "Paris")["rouge1"] == 0.5  # the blank sentence is one empty word, as in `rouge`
    assert rouge_recall("Paris", "...") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}  # no sentence: LooGLE's 0


def test_loogle_qa_averages_the_parts_and_records_them():
    score, detail = score_with_detail("loogle_qa", "the cat ran", ["the cat sat. the dog ran"])
    # BLEU-1: the, cat, ran all in the reference's whitespace words (sat. is one), 3 against 6: exp(1 - 2)
    parts = {"bleu1": math.exp(-1), "bleu4": 0.0, "rouge1": 0.6, "rouge2": 0.2, "rougeL": 0.6}
    assert score == pytest.approx(sum(parts.values()) / 5)
    assert {k: detail[k] for k in parts} == pytest.approx(parts) and detail["reason"].startswith("mean of bleu1")
    assert METRICS["loogle_qa"]("Lyon is where Alice Moreau was born", ["Lyon is where Alice Moreau was born"]) == 1.0


def test_cloze_exact_and_partial_match_as_loogle():
    ref = json.dumps({"<mask-0>": "Bob Smith", "<mask-1>": "Paris"})
    assert cloze_matches("{'<mask-0>': 'Bob', '<mask-1>': 'Paris'}", ref) == (1, 2, 2)  # Bob shares a word
    assert cloze_matches(' {"<mask-0>": "Bob Smith", "<mask-1>": "Paris"}', ref) == (2, 2, 2)
    assert cloze_matches("{'<mask-0>': 'Bob', '<mask-1>': 3}", ref) == (0, 0, 2)  # a non-text value: partial 0
    score, detail = score_with_detail("loogle_cloze", "{'<mask-0>': 'Bob', '<mask-1>': 'Paris'}", [ref])
    assert score == 0.75 and (detail["exact_match"], detail["partial_match"]) == (0.5, 1.0)
    # not a dict literal (trailing words, a list, code): nothing matches, and nothing runs
    for answer in ("{'<mask-0>': 'Bob Smith'} and more", "['Bob Smith', 'Paris']", "__import__('os').getcwd()"):
        assert METRICS["loogle_cloze"](answer, [ref]) == 0.0


@pytest.fixture(scope="module")
def bpe():
    return train_bpe()


def loogle(subtask, **kw):
    """A LooGLE task like tuning_ruler.yaml's entries (scorer, no stop words, dev_split), on the local stand-in file."""
    scorer = "loogle_cloze" if subtask == "shortdep_cloze" else "loogle_qa"
    return get_task("hf_qa", {"source": str(DATA / f"{subtask}.jsonl"), "scorer": scorer, "stop_words": [],
                              "dev_split": {"fraction": 0.5}} | kw)


@pytest.mark.parametrize("subtask", ["shortdep_qa", "shortdep_cloze"])
def test_loogle_rows_become_samples_cut_in_the_middle_to_the_length(bpe, subtask):
    from kvstudy.tuning import dev_seed

    task = loogle(subtask, n_samples=10)
    test, dev = task.samples(bpe, 450, 0), task.samples(bpe, 450, dev_seed(0))
    assert len(test) == len(dev) == 4  # 2 of the 4 documents each side, 2 questions on each
    assert not {s.meta["cluster"] for s in test} & {s.meta["cluster"] for s in dev}
    for s in test + dev:
        text = bpe.decode(s.context_ids)
        assert len(s.context_ids) == 450 and s.meta["truncated"] and s.meta["original_context_tokens"] > 450
        assert text.startswith("<s>Please") and "START" in text and text.endswith("END") and "word200" not in text
        assert bpe.decode(s.question_ids).endswith("Answer:" if subtask == "shortdep_cloze" else "Answer: ")
        assert s.meta["max_new_tokens"] == (50 if subtask == "shortdep_cloze" else 300)
        assert METRICS[task.metric](s.references[0], s.references) == 1.0  # the reference scores 1 against itself
    assert task.stop_words == ()  # answers run to the end of sequence, as kvpress generates them
