"""HELMET's in-context demos for RAG and re-ranking (its configs run both with `shots: 2`): which demo rows a test
sample gets, and how they read.

HELMET (data.py, `load_qa` / `load_msmarco_rerank`) seeds a shuffle of the demo rows with a hash of the sample's key
(sha256 of its id or question, mod 2^31), drops duplicate keys and takes the first `shots`; re-ranking first leaves
out the demos that share the sample's query id. The shuffle is `datasets.Dataset.shuffle(seed=h)`, a permutation by
numpy's default generator seeded with h, which is what `permutation` below draws (tests/test_hf_tasks.py checks it
against datasets itself), so a study gets HELMET's demos for HELMET's rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kvstudy.tasks import prompt
from kvstudy.tasks.base import TaskParamError

RAG_DEMO = "{documents}\n\nQuestion: {question}\nAnswer: {answer}"
RAG_PASSAGE = "Document (Title: {title}): {text}"


@dataclass
class Demos:
    """A task's HELMET demos (`shots` from `demo_file`, rows of the task's own format); a base put before HFTask."""

    param_ranges: ClassVar[dict] = {"shots": (0, 100)}

    shots: int = 0
    demo_file: str = ""  # HELMET's kilt/*-train-*_k3_*.jsonl (RAG), msmarco/test_reranking_data_k10_dep3.jsonl

    def __post_init__(self):
        super().__post_init__()
        if self.shots and not self.demo_file.strip():
            raise TaskParamError("demo_file", f"shots {self.shots} needs HELMET's demo file, or set shots: 0")

    def demo_rows(self, seed: int) -> list[dict]:
        """The demo file's rows, checked as the task's own rows are; none for `shots: 0`."""
        return self.records(seed, source=self.demo_file) if self.shots else []


def demo_seed(key) -> int:
    """HELMET's per-sample seed: sha256 of the key's text, mod 2^31."""
    return int(hashlib.sha256(str(key).encode("utf-8")).hexdigest(), 16) % 2**31


def permutation(n: int, seed: int) -> np.ndarray:
    """The order `datasets.Dataset.shuffle(seed=seed)` puts n rows in."""
    return np.random.default_rng(seed).permutation(n)


def pick(demos: list[dict], key: str, sample_key, shots: int, skip_same: bool = False) -> list[dict]:
    """The `shots` demos of the sample whose key is `sample_key`: shuffled by its seed, the first of each key;
    with `skip_same`, no demo with the sample's own key (re-ranking)."""
    pool = [d for d in demos if d[key] != sample_key] if skip_same else demos
    out, seen = [], set()
    for i in permutation(len(pool), demo_seed(sample_key)):
        if pool[i][key] in seen:
            continue
        seen.add(pool[i][key])
        out.append(pool[i])
        if len(out) == shots:
            break
    if len(out) < shots:
        raise ValueError(f"{len(out)} distinct demos, shots {shots}")
    return out


def rag_text(demos: list[dict], passages: str, question: str, answers: str) -> str:
    """HELMET's RAG demos: each its passages, question and first answer; blank lines between and after."""
    if not demos:
        return ""
    parts = [prompt.fill(RAG_DEMO, {
        "documents": "\n\n".join(prompt.fill(RAG_PASSAGE, {"title": c.get("title", ""), "text": c["text"]})
                                 for c in prompt.get_field(d, passages)),
        "question": prompt.get_field(d, question),
        "answer": _first(prompt.get_field(d, answers))}) for d in demos]
    return "\n\n".join(parts) + "\n\n"


def rerank_text(demos: list[dict], passage: str, passages: str, question: str) -> str:
    """HELMET's re-ranking demos: each its passages (`passage` format), query and gold ranking (ids by label)."""
    out = ""
    for d in demos:
        ctxs = prompt.get_field(d, passages)
        ranking = " > ".join(str(c["id"]) for c in sorted(ctxs, key=lambda c: float(c.get("label", 0)),
                                                          reverse=True))  # unlabelled: grade 0, as the qrels
        shown = "\n\n".join(prompt.fill(passage, {"id": c["id"], "title": c.get("title", ""), "text": c["text"]})
                            for c in ctxs)
        out += shown + f"\n\nQuery: {prompt.get_field(d, question)}\nRanking: {ranking}\n\n"
    return out


def _first(answers):
    return answers if isinstance(answers, str) else answers[0]
