"""LongProc's output checks, rewritten without `eval`: route partial accuracy, countdown solutions, TSV row F1,
travel-plan accuracy. Each parses the model's tagged block (`<Route>`, `<Solution>`, ```tsv, `<Plan>`) when present.
"""

from __future__ import annotations

import csv
import json
import re
from fractions import Fraction

from kvstudy.metrics.qa import normalize_answer


def tagged(text: str, tag: str) -> str:
    """The text inside the last `<tag>`...`</tag>`; an unclosed tag runs to the end; no tag: the whole text."""
    start = text.rfind(f"<{tag}>")
    if start >= 0:
        text = text[start + len(tag) + 2 :]
    end = text.find(f"</{tag}>")
    return (text[:end] if end >= 0 else text).strip()


def route_partial_accuracy(prediction: str, references: list[str]) -> float:
    """The fraction of reference route lines matched, in order, before the first wrong line (1.0 = whole route)."""
    gold = [line.strip() for line in references[0].strip().splitlines()]
    pred = [line.strip() for line in tagged(prediction, "Route").splitlines() if line.strip()]
    n = 0
    for g, p in zip(gold, pred):
        if g != p:
            break
        n += 1
    return n / len(gold)


_EQ = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*$")


def countdown_solution(prediction: str, references: list[str]) -> float:
    """1 if the solution's equations are right, use each given number once, and end at the target."""
    ref = json.loads(references[0])
    pool, target = list(ref["numbers"]), ref["target"]
    lines = [ln for ln in tagged(prediction, "Solution").splitlines() if ln.strip()]
    if len(lines) != len(pool) - 1:
        return 0.0
    for ln in lines:
        m = _EQ.match(ln)
        if not m:
            return 0.0
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        if op == "/" and b == 0:
            return 0.0
        val = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b or 1)}[op]
        if val != c:
            return 0.0
        for x in (a, b):
            if x not in pool:
                return 0.0
            pool.remove(x)
        pool.append(c)
    return float(pool == [target])


def _tsv_rows(text: str) -> tuple[list[str], list[tuple[str, ...]]]:
    rows = [r for r in csv.reader(text.strip().splitlines(), delimiter="\t")]
    if not rows:
        return [], []
    header, body = rows[0], rows[1:]
    if body and len(body[-1]) != len(header):  # a cut-off last line (LongProc drops it too)
        body = body[:-1]
    norm = lambda s: normalize_answer(s).replace(" ", "")  # noqa: E731  (LongProc ignores spaces)
    return header, [tuple(norm(c) for c in r) if len(r) == len(header) else ("N/A",) for r in body]


def tsv_row_f1(prediction: str, references: list[str]) -> float:
    """LongProc html_to_tsv: F1 of predicted rows found in the reference table and reference rows predicted
    (unordered, cells normalised)."""
    m = re.search(r"```tsv([\s\S]*?)(```|$)", prediction)
    _, pred = _tsv_rows(m.group(1) if m else prediction)
    _, gold = _tsv_rows(references[0])
    if not pred or not gold:
        return 0.0
    gold_set, pred_set = set(gold), set(pred)
    precision = sum(r in gold_set for r in pred) / len(pred)
    recall = sum(r in pred_set for r in gold) / len(gold)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


_STAY = re.compile(r"Day\s*(\d+)\s*-\s*(\d+)\W*(?:Arriving in .*? and )?[Vv]isit (.+?) for (\d+) days?", re.I)


def travel_plan_accuracy(prediction: str, references: list[str]) -> float:
    """LongProc travel_planning: 1 if the plan visits the reference cities in order for the reference durations."""
    ref = json.loads(references[0])
    stays = _STAY.findall(tagged(prediction, "Plan"))
    cities = [c.strip() for _, _, c, _ in stays]
    days = [int(d) for _, _, _, d in stays]
    return float(cities == list(ref["cities"]) and days == [int(d) for d in ref["durations"]])
