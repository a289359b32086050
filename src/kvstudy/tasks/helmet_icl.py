"""HELMET in-context learning (banking77, clinic150): many labelled examples fill the context, then a test text;
scored by label accuracy.

Examples come from `demo_split` of the same dataset (or `demo_source`), balanced round-robin over labels in a
seeded order, as many as fit the length. Labels are written as the dataset's label ids (as HELMET does by default,
so the model must learn the mapping from the examples). banking77: `PolyAI/banking77` (`text`, `label`);
clinic150: `clinc_oos`, name `plus` (`text`, `intent`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from kvstudy.tasks import prompt
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample
from kvstudy.tasks.helmet_rag import fit_passages
from kvstudy.tasks.hf_base import HFTask, answer_problem, fields_problem

TEMPLATE = ('Use the provided mapping from the text to label to assign a label to the text. Only output'
            ' "label: {{label}}" and nothing else.\n\n{context}\n\n{question}')
EXAMPLE = "{text}\nlabel: {label}"


@register
@dataclass
class HelmetICL(HFTask):
    name = "helmet_icl"
    metric = "icl_accuracy"
    description = "HELMET ICL (banking77, clinic150): labelled examples fill the context; label a test text"

    max_new_tokens: int = 20
    # HELMET runs it without a chat template and stops at newline (configs: use_chat_template false,
    # stop_new_line true); a study may set chat_template: auto and its own stop_words
    chat_template: str = "none"
    stop_words: tuple | None = ("\n",)
    demo_source: str = ""  # default: the same source, split demo_split
    demo_split: str = "train"
    text_field: str = "text"
    label_field: str = "label"

    def row_problem(self, row: dict) -> str | None:
        return fields_problem(row, self.text_field) or answer_problem(row, self.label_field)

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        tests = self.pick(self.records(seed), seed)
        demos = self.records(seed, self.demo_source or self.source, self.demo_split)
        by_label: dict[str, list[str]] = defaultdict(list)
        rng = np.random.default_rng([seed, 32])
        for j in rng.permutation(len(demos)):
            d = demos[j]
            by_label[str(prompt.get_field(d, self.label_field))].append(
                prompt.fill(EXAMPLE, {"text": prompt.get_field(d, self.text_field),
                                      "label": prompt.get_field(d, self.label_field)}))
        order = [str(x) for x in rng.permutation(sorted(by_label))]
        balanced = [by_label[lab][k] for k in range(max(map(len, by_label.values())))
                    for lab in order if k < len(by_label[lab])]
        out = []
        for i, r in enumerate(tests):
            question = prompt.fill("{text}\nlabel:", {"text": prompt.get_field(r, self.text_field)})
            p = prompt.split_prompt(tokenizer, TEMPLATE.replace("{{label}}", "{label_}"),
                                    {"question": question, "context": "", "label_": "{label}"}, "context",
                                    self.chat_template)
            context, n = fit_passages(tokenizer, balanced, p.budget(length))
            ctx, q, meta = prompt.build(tokenizer, TEMPLATE.replace("{{label}}", "{label_}"),
                                        {"question": question, "context": context, "label_": "{label}"},
                                        "context", length, self.chat_template, self.truncation)
            meta.update(n_examples=n)
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q,
                              references=[str(prompt.get_field(r, self.label_field))], meta=meta))
        return out
