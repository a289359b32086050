"""HELMET `cite` (ALCE) scoring: answer correctness (ASQA `str_em`, QAMPARI `qampari_rec_top5`) and citation
recall / precision judged by an entailment function — ALCE's `eval_alce.py` as HELMET runs it (`--citations`,
`at_most_citations` 3), written out because ALCE is a script, not a library.

Citation recall of an answer: the fraction of its sentences whose cited passages (at most 3, joined) entail the
sentence, citations removed; a sentence without a citation, or citing a passage that was not shown, counts 0.
Citation precision: of all citations, the fraction that are needed — a citation of a supported sentence counts
unless it entails nothing alone *and* the other cited passages entail the sentence without it (ALCE's two
conditions); citations of unsupported sentences count 0. QAMPARI's "sentences" are the comma-separated answers,
each prefixed with the question. The judge is injected (`entails(premise, hypothesis) -> bool`; the real one is
`kvstudy.metrics.nli`), so the algorithm is tested without a model.

Deviations from HELMET, all small: sentences are split by a regex (end punctuation followed by a space or a
citation, except after common abbreviations and initials, or an ellipsis before a lower-case word: what Punkt
does, tested against NLTK's Punkt on the cases in tests/test_cite.py) instead of NLTK's Punkt, whose English
model is a separate download; an answer with no sentence of >= 5 characters scores 0 recall and 0
precision (HELMET leaves such samples out of its citation means); a citation past the passages shown (HELMET: past
the file's passages) or `[0]` (HELMET: the last passage) is unsupported. HELMET reports 0-100; these are fractions in [0, 1].
"""

from __future__ import annotations

import json
import re
from typing import Callable

from kvstudy.metrics.qa import normalize_answer

Entails = Callable[[str, str], bool]

_CITE_NUM = re.compile(r"\[\d+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "corp", "no",
                  "vol", "fig", "e.g", "i.e", "u.s", "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
                  "sept", "oct", "nov", "dec", "gen", "col", "lt", "sgt", "mt", "ft", "approx", "est"}
# end punctuation (and closing quotes/brackets) before a space, or right before a citation: Punkt breaks
# "wrote it.[1] It" after "it.", so that citation belongs to the next sentence
_BOUNDARY = re.compile(r"[.!?][\"')\]]*(?:\s+(?=\S)|(?=\[\d))")


def remove_citations(text: str) -> str:
    """ALCE's `remove_citations`: drop `[n` markers and closing brackets."""
    return re.sub(r"\[\d+", "", re.sub(r" \[\d+", "", text)).replace(" |", "").replace("]", "")


def clean_output(text: str) -> str:
    """What eval_alce.py scores: newlines become spaces, a leftover `<|im_end|>` is dropped."""
    return re.sub(r"\n+", " ", text).replace("<|im_end|>", "")


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer (a Punkt-like regex: see the module docstring)."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        word = text[start : m.start()].split()[-1:] or [""]
        stem = word[0].lstrip("\"'([").lower()
        if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):  # "Dr. Who", "J. K. Rowling"
            continue
        if text[m.start() - 1 : m.start()] == "." and text[m.end() : m.end() + 1].islower():  # "Wait... what"
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def cited(sentence: str) -> list[int]:
    """0-based passage indices cited in a sentence (`[3]` -> 2), in order, repeats kept (as ALCE)."""
    return [int(r[1:]) - 1 for r in _CITE_NUM.findall(sentence)]


def format_passage(p: dict) -> str:
    return f"Title: {p.get('title', '')}\n{p['text']}"


def claims(answer: str, qampari_question: str | None = None) -> list[str]:
    """The units whose citations are checked: sentences (ASQA) or `question answer` per listed answer (QAMPARI)."""
    if qampari_question is not None:
        return [qampari_question + " " + x.strip() for x in answer.rstrip().rstrip(".").rstrip(",").split(",")]
    return [s for s in split_sentences(answer) if len(s.strip()) >= 5]


def citation_recall_precision(answer: str, passages: list[dict], entails: Entails,
                              qampari_question: str | None = None, at_most: int = 3) -> tuple[float, float]:
    """(citation recall, citation precision) of one answer; `passages` are the documents shown, in order."""
    sents = claims(answer, qampari_question)
    if not sents:
        return 0.0, 0.0
    support = needed = total = 0
    for sent in sents:
        claim = remove_citations(sent).strip()
        ref = cited(sent)
        if not ref or any(r >= len(passages) or r < 0 for r in ref):
            continue  # unsupported; out-of-range citations are not counted in the precision's denominator
        ref = ref[:at_most]
        total += len(ref)
        joint = entails("\n".join(format_passage(passages[r]) for r in ref), claim)
        support += joint
        if joint and len(ref) > 1:
            for r in ref:  # is each citation needed?
                if entails(format_passage(passages[r]), claim):
                    needed += 1
                    continue
                rest = list(ref)
                rest.remove(r)
                if not entails("\n".join(format_passage(passages[x]) for x in rest), claim):
                    needed += 1  # the others do not support the sentence without it
        else:
            needed += joint
    return support / len(sents), (needed / total if total else 0.0)


def str_em(prediction: str, references: list[str]) -> float:
    """ASQA `str_em`: the fraction of the question's interpretations (references: one JSON list of short answers
    each) with a short answer found in the answer, all normalised; citations are removed first."""
    text = normalize_answer(remove_citations(clean_output(prediction)))
    groups = [json.loads(r) for r in references]
    return sum(any(normalize_answer(a) in text for a in g) for g in groups) / len(groups) if groups else 0.0


def qampari_rec_top5(prediction: str, references: list[str]) -> float:
    """QAMPARI `qampari_rec_top5`: answers found among the comma-separated predictions (exact after
    normalisation, any alias; references: one JSON list of aliases per answer), capped at 5, over min(5, #answers)."""
    text = remove_citations(clean_output(prediction))
    preds = {normalize_answer(x.strip()) for x in text.rstrip().rstrip(".").rstrip(",").split(",")} - {""}
    answers = [[normalize_answer(a) for a in json.loads(r)] for r in references]
    if not answers:
        return 0.0
    return min(5, sum(any(a in preds for a in g) for g in answers)) / min(5, len(answers))
