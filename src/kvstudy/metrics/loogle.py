"""LooGLE's automatic metrics as kvpress's `evaluation/benchmarks/loogle/calculate_metrics.py` computes them (from
LooGLE's `Evaluation/automatic_metrics.py`), written out rather than adding nltk and `rouge` as dependencies.

QA (shortdep_qa, longdep_qa): BLEU-1 and BLEU-4 (nltk `sentence_bleu`, weights (1,0,0,0) and (0,0,0,1), no
smoothing, on whitespace-split words) and ROUGE-1 / -2 / -L *recall* (the `rouge` package, its defaults: text split
into sentences at ".", n-grams counted once each, ROUGE-L as the union LCS over sentences). kvpress's plots (log
002) average every sub-metric; `loogle_qa` averages these five. METEOR (nltk WordNet data) and BERTScore (a
roberta-large model) are left out, so `loogle_qa` is not the log's average on the same answers; nltk gives BLEU-4
2.2e-308 (float min) where no 4-gram matches, here 0.

Cloze (shortdep_cloze): the reference is the JSON dict {"<mask-i>": entity}; the answer is read as a Python
literal (`ast.literal_eval`, literals only, as LooGLE does: the prompt's example uses single quotes). Exact match:
masks whose entity equals the reference's; partial: masks sharing a word with it. LooGLE sums matches over all
masks of a task (micro); here each sample scores its share and samples are averaged (macro).
"""

from __future__ import annotations

import ast
import math
from collections import Counter

QA_PARTS = ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL")


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def bleu(reference: str, hypothesis: str, n: int) -> float:
    """nltk `sentence_bleu([ref], hyp)` with all weight on n-grams of order `n` (1 or 4): brevity penalty times the
    clipped n-gram precision; 0 when no unigram (or n-gram) matches."""
    ref, hyp = reference.replace("\n", " ").split(), hypothesis.replace("\n", " ").split()
    matches = {}
    for k in (1, n):
        counts, ref_counts = Counter(_ngrams(hyp, k)), Counter(_ngrams(ref, k))
        matches[k] = (sum(min(c, ref_counts[g]) for g, c in counts.items()), max(1, sum(counts.values())))
    if matches[1][0] == 0 or matches[n][0] == 0:
        return 0.0
    bp = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return bp * matches[n][0] / matches[n][1]


def _sentences(text: str) -> list[list[str]]:
    """The `rouge` package's split: sentences at ".", whitespace collapsed, words at single spaces (a blank
    sentence is one empty word, as there)."""
    return [" ".join(s.split()).split(" ") for s in text.split(".") if len(s) > 0]


def rouge_recall(reference: str, hypothesis: str) -> dict[str, float]:
    """`rouge.Rouge().get_scores(hypothesis, reference)`'s recalls: rouge1, rouge2 (distinct n-grams of the
    reference found in the hypothesis) and rougeL (distinct words of the reference's sentences' LCS with each
    hypothesis sentence, unioned, over distinct reference words). An empty side scores 0 (LooGLE's fallback)."""
    ref_s, hyp_s = _sentences(reference), _sentences(hypothesis)
    if not ref_s or not hyp_s:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    ref_w, hyp_w = [w for s in ref_s for w in s], [w for s in hyp_s for w in s]
    out = {}
    for n in (1, 2):
        ref_g = set(_ngrams(ref_w, n))
        out[f"rouge{n}"] = len(ref_g & set(_ngrams(hyp_w, n))) / len(ref_g) if ref_g else 0.0
    union: set[str] = set()
    for r in ref_s:
        for h in hyp_s:
            union |= lcs_words(r, h)
    out["rougeL"] = len(union) / len(set(ref_w))
    return out


def lcs_words(x: list[str], y: list[str]) -> set[str]:
    """The words of one longest common subsequence of x and y, the one `rouge`'s backtrack picks (prefer the
    step in y on ties); the table is kept for the backtrack, which kvstudy.metrics.qa's length-only LCS drops."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, a in enumerate(x, 1):
        for j, b in enumerate(y, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a == b else max(table[i - 1][j], table[i][j - 1])
    out, i, j = set(), len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            out.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out


def qa_parts(prediction: str, reference: str) -> dict[str, float]:
    return {"bleu1": bleu(reference, prediction, 1), "bleu4": bleu(reference, prediction, 4),
            **rouge_recall(reference, prediction)}


def loogle_qa_detail(prediction: str, references: list[str]) -> tuple[float, dict]:
    """The mean of LooGLE's BLEU-1, BLEU-4, ROUGE-1/2/L recall, best over the references, with the parts."""
    best = max((qa_parts(prediction, r) for r in references), key=lambda p: sum(p.values()))
    score = sum(best.values()) / len(best)
    return score, {"reason": "mean of " + ", ".join(QA_PARTS), **best}


def _literal_dict(text: str) -> dict | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def cloze_matches(prediction: str, reference: str) -> tuple[int, int, int]:
    """(exact, partial, masks) of one cloze answer, as LooGLE's get_exact_match / get_partial_match."""
    ref = _literal_dict(reference)
    if not ref:
        return 0, 0, 1
    hyp = _literal_dict(prediction) or {}
    exact = sum(hyp.get(k) == v for k, v in ref.items())
    try:  # LooGLE: a value that is not text makes the whole answer's partial match 0
        partial = sum(bool(set(v.split()) & set(hyp[k].split())) for k, v in ref.items() if k in hyp)
    except AttributeError:
        partial = 0
    return exact, partial, len(ref)


def loogle_cloze_detail(prediction: str, references: list[str]) -> tuple[float, dict]:
    """The mean of LooGLE's exact and partial match shares of the masks (kvpress's plotted average)."""
    exact, partial, masks = max((cloze_matches(prediction, r) for r in references), key=lambda m: m[0] + m[1])
    score = (exact + partial) / (2 * masks)
    return score, {"reason": "mean of exact_match, partial_match", "exact_match": exact / masks,
                   "partial_match": partial / masks, "masks": masks}


def loogle_qa(prediction: str, references: list[str]) -> float:
    return loogle_qa_detail(prediction, references)[0]


def loogle_cloze(prediction: str, references: list[str]) -> float:
    return loogle_cloze_detail(prediction, references)[0]
