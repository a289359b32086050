"""HELMET's QA metrics: SQuAD answer normalisation, substring exact match, ROUGE-L F1, token F1 (LongBench's
`qa_f1_score`), ICL label accuracy.

ROUGE-L is written out (an LCS over normalised words, ~15 lines) rather than adding `rouge-score` as a
dependency; unlike HELMET's rouge-score call it does not stem, so scores can be slightly lower on inflections.
"""

from __future__ import annotations

import re
import string
from collections import Counter

# the extra metrics of QA tasks (hf_qa, narrativeqa, ruler_qa, helmet_rag): EM as HELMET scores generated
# answers (a normalised reference inside the answer), token F1 and ROUGE-L F1
QA_METRICS = ("substring_exact_match", "token_f1", "rouge_l_f1")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (SQuAD / HELMET)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def substring_exact_match(prediction: str, references: list[str]) -> float:
    """HELMET `substring_exact_match`: 1 if a normalised reference occurs in the normalised prediction."""
    p = normalize_answer(prediction)
    return float(any(normalize_answer(r) in p for r in references if normalize_answer(r)))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(prediction: str, references: list[str]) -> float:
    """ROUGE-L F1 (longest common subsequence of normalised words), best over the references."""
    p = normalize_answer(prediction).split()
    best = 0.0
    for r in references:
        ref = normalize_answer(r).split()
        lcs = _lcs(p, ref) if p and ref else 0
        if lcs:
            prec, rec = lcs / len(p), lcs / len(ref)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def token_f1(prediction: str, references: list[str]) -> float:
    """Token F1 of normalised words (SQuAD's; LongBench's `qa_f1_score`, its HotpotQA and NarrativeQA metric),
    best over the references: the harmonic mean of the shared words' precision and recall, words counted with
    multiplicity."""
    p = normalize_answer(prediction).split()
    best = 0.0
    for r in references:
        ref = normalize_answer(r).split()
        common = sum((Counter(p) & Counter(ref)).values())
        if common:
            prec, rec = common / len(p), common / len(ref)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def icl_accuracy(prediction: str, references: list[str]) -> float:
    """HELMET ICL: the label the model writes (after `label:` if present, first line) equals the reference."""
    text = prediction.rsplit("label:", 1)[-1].strip()
    first = text.splitlines()[0] if text else ""
    return float(normalize_answer(first) in {normalize_answer(r) for r in references})
