"""RULER's qa_1 (SQuAD) and qa_2 (HotpotQA): the gold paragraph(s) among distractor paragraphs up to the length.

As RULER's scripts/data/synthetic/qa.py: documents "Document i:\\n..." joined by blank lines, the question's gold
documents, then its own distractors (SQuAD: the article's other paragraphs), then random others, as many as fit in
`length` tokens (RULER bisects the document count; here documents are added while they fit), shuffled; RULER's
template and `string_match_part`. Data: SQuAD v2 `dev-v2.0.json` and HotpotQA `hotpot_dev_distractor_v1.json`, the
files RULER's download script gets (a study fetches them as `data:` entries). The questions are split once, by a
fixed shuffle, into a test half (study seeds) and a dev half (tuning's dev seeds, >= DEV_SEED_OFFSET): a press
search never tunes on a question the test split asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvstudy.metrics.qa import QA_METRICS
from kvstudy.tasks.base import DEV_SEED_OFFSET, Sample, Task, TaskParamError
from kvstudy.tasks.haystack import PieceTokenizer
from kvstudy.tasks.registry import register
from kvstudy.tasks.ruler_qa_data import DATASETS, read_qa

INSTRUCTION = ("Answer the question based on the given documents. Only give me the answer and do not output any "
               "other words.")
HEADER = f"{INSTRUCTION}\n\nThe following are given documents.\n\n"


def split_half(n: int, dev: bool) -> list[int]:
    """The question indices of the test or the dev half: a fixed shuffle (independent of any seed), halved."""
    order = np.random.default_rng(20240).permutation(n)
    return sorted(order[n // 2 :] if dev else order[: n // 2])


@register
@dataclass
class RulerQA(Task):
    name = "ruler_qa"
    metric = "string_match_part"
    description = "RULER qa_1 / qa_2: SQuAD or HotpotQA gold paragraphs among distractors up to the length"
    param_choices = {"dataset": DATASETS}

    max_new_tokens: int = 32  # RULER's qa tokens_to_generate
    metrics: tuple = QA_METRICS  # EM, token F1 and ROUGE-L beside the score (kvstudy.metrics.qa)
    dataset: str = "squad"
    source: str = ""  # the dataset's JSON file as RULER reads it (SQuAD v2 dev, HotpotQA dev distractor)

    def __post_init__(self):
        super().__post_init__()
        if not self.source.strip():
            raise TaskParamError("source", f"empty: give {self.dataset}'s JSON file (a data: entry fetches it)")

    @classmethod
    def disjoint_dev(cls, params: dict) -> bool:
        return True  # dev seeds read the dev half of the questions

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        items, docs = read_qa(self.dataset, self.source)
        rows = split_half(len(items), dev=seed >= DEV_SEED_OFFSET)
        if len(rows) < self.n_samples:
            raise ValueError(f"source {self.source}: {len(rows)} questions in each half, fewer than n_samples "
                             f"{self.n_samples}")
        enc = PieceTokenizer(tokenizer, self.chat_template)
        rng = np.random.default_rng([seed, length, 41])
        picked = rng.choice(rows, size=self.n_samples, replace=False)
        return [self._sample(enc, length, rng, items[q], docs, i) for i, q in enumerate(picked)]

    def _sample(self, enc: PieceTokenizer, length: int, rng, item, docs, i: int) -> Sample:
        question = enc.question(f"\n\n{INSTRUCTION}\n\nQuestion: {item.question} Answer:")
        budget = length - len(enc.bos) - len(enc(HEADER)) - len(question)
        taken = self._documents(enc, budget, rng, item, docs)
        order = rng.permutation(len(taken))
        ids = enc.bos + enc(HEADER)
        for n, k in enumerate(order):
            ids += enc(("\n\n" if n else "") + f"Document {n + 1}:\n{docs[taken[k]]}")
        gold = [n + 1 for n, k in enumerate(order) if taken[k] in item.gold]
        return Sample(id=str(i), context_ids=ids, question_ids=question, references=list(item.answers),
                      meta={"n_documents": len(taken), "gold_documents": gold, "question": item.question})

    def _documents(self, enc, budget: int, rng, item, docs) -> list[int]:
        """Gold documents, then the item's own distractors, then random others, while they fit in `budget` tokens
        (a document's cost counted with the longest label and separator it can get)."""
        others = [d for d in rng.permutation(len(docs)) if d not in item.gold and d not in item.more]
        taken, used = [], 0
        for d in [*item.gold, *rng.permutation(list(item.more)), *others]:
            cost = len(enc(f"\n\nDocument {len(docs)}:\n{docs[d]}"))
            if used + cost > budget:
                if d in item.gold:
                    raise ValueError(f"{budget} tokens left for documents cannot hold the gold documents of "
                                     f"{item.question!r} (a longer length)")
                break
            taken.append(int(d))
            used += cost
        return taken

