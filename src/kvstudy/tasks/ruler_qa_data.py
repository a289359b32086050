"""RULER's qa data readers (scripts/data/synthetic/qa.py): SQuAD v2 and HotpotQA dev as questions over documents.

SQuAD (`dev-v2.0.json`): every answerable question, its paragraph the gold document, the other paragraphs of the
same article its first distractors (`more`). HotpotQA (`hotpot_dev_distractor_v1.json`): every question, all ten
of its paragraphs ("title\\ntext") gold, as RULER takes them. Documents are deduplicated and sorted as RULER's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATASETS = ("squad", "hotpotqa")


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: tuple[str, ...]
    gold: tuple[int, ...]  # indices into the documents
    more: tuple[int, ...] = ()  # distractors taken first (SQuAD: the same article's other paragraphs)


def _squad(data) -> tuple[list[QAItem], list[str]]:
    docs = sorted({p["context"] for d in data["data"] for p in d["paragraphs"]})
    idx = {c: i for i, c in enumerate(docs)}
    items = []
    for d in data["data"]:
        article = [idx[p["context"]] for p in d["paragraphs"]]
        for p in d["paragraphs"]:
            gold = idx[p["context"]]
            for q in p["qas"]:
                if not q.get("is_impossible") and q["answers"]:
                    items.append(QAItem(q["question"], tuple(a["text"] for a in q["answers"]), (gold,),
                                        tuple(i for i in article if i != gold)))
    return items, docs


def _hotpotqa(data) -> tuple[list[QAItem], list[str]]:
    text = lambda t, p: f"{t}\n{''.join(p)}"  # noqa: E731
    docs = sorted({text(t, p) for d in data for t, p in d["context"]})
    idx = {c: i for i, c in enumerate(docs)}
    items = [QAItem(d["question"], (d["answer"],), tuple(idx[text(t, p)] for t, p in d["context"])) for d in data]
    return items, docs


@lru_cache(maxsize=2)
def read_qa(dataset: str, source: str) -> tuple[tuple[QAItem, ...], tuple[str, ...]]:
    """(questions, documents) of RULER's `dataset` from its JSON file `source`; a ValueError names the file."""
    try:
        data = json.loads(Path(source).expanduser().read_text(encoding="utf-8"))
        items, docs = (_squad if dataset == "squad" else _hotpotqa)(data)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"source {source}: not {dataset}'s JSON as RULER reads it ({type(e).__name__}: {e})") from e
    if not items:
        raise ValueError(f"source {source}: no answerable question")
    return tuple(items), tuple(docs)
