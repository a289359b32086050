"""HELMET long QA on NarrativeQA: a story (middle-truncated to the length) and a question; ROUGE-L F1.

`hf_qa` with NarrativeQA's nested fields as defaults (`deepmind/narrativeqa`: `document.text`,
`question.text`, `answers[].text`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstudy.tasks.registry import register
from kvstudy.tasks.hf_qa import HFQA


@register
@dataclass
class NarrativeQA(HFQA):
    name = "narrativeqa"
    metric = "rouge_l_f1"
    description = "HELMET long QA: NarrativeQA story + question, ROUGE-L F1 (hf_qa with its fields)"

    max_new_tokens: int = 100
    source: str = "deepmind/narrativeqa"
    scorer: str = "rouge_l_f1"
    context_field: str = "document.text"
    question_field: str = "question.text"
    answer_field: str = "answers.text"
    template: str = ("You are given a story and a question. Answer the question as concisely as you can, using a"
                     " single phrase if possible.\n\n{context}\n\nQuestion: {question}\nAnswer:")
