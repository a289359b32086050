"""HELMET re-ranking (MS MARCO): rank the passages that fit the length for a query; scored by NDCG@10.

Rows: `query, ctxs: [{id, title, text, label}, ...]` (HELMET's msmarco files); `label` is the relevance grade.
The reference is the JSON qrels of the passages shown (`{id: label}`); the model writes `Ranking: a > b > ...`.
HELMET's config adds `shots: 2` demos (`demo_file`: its msmarco/test_reranking_data_k10_dep3.jsonl), each a query
with its passages and gold ranking, chosen as HELMET does (kvstudy.tasks.helmet_demos): never the sample's own
query; when the demo file has more than twice as many rows as the samples, none of any sample's queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kvstudy.tasks import prompt
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample
from kvstudy.tasks.helmet_rag import fit_passages, passages_problem
from kvstudy.tasks.helmet_demos import Demos, pick, rerank_text
from kvstudy.tasks.hf_base import HFTask, fields_problem

TEMPLATE = ("You are provided with a list of documents, each indicated by their ID. Rank each document based on"
            " their relevance to the question in descending order from most relevant to least relevant texts."
            " Include all documents in the rankings. Write your answer using the unique IDs, with the following"
            " format:\nRanking: ID3 > ID1 > ID2\n\n{demos}{context}\n\nQuery: {question}")
PASSAGE = "[ID: {id}] Document (Title: {title}): {text}"


@register
@dataclass
class HelmetRerank(Demos, HFTask):
    name = "helmet_rerank"
    metric = "ndcg_at_10"
    description = "HELMET re-rank (msmarco): rank the passages for a query, NDCG@10"

    max_new_tokens: int = 200
    # HELMET runs it without a chat template and stops at newline (configs: use_chat_template false,
    # stop_new_line true); a study may set chat_template: auto and its own stop_words
    chat_template: str = "none"
    stop_words: tuple | None = ("\n",)
    question_field: str = "query"
    passages_field: str = "ctxs"
    id_field: str = "qid"  # the query id, which demos must not share with the sample

    def row_problem(self, row: dict) -> str | None:
        ids = (self.id_field,) if self.shots else ()  # demos are chosen by query id
        return (fields_problem(row, self.question_field, *ids)
                or passages_problem(row, self.passages_field, ("id", "text")))

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        # the answer cue opens the assistant turn, or (no chat template) a paragraph of its own, as in HELMET
        prefix = "Ranking:" if prompt.uses_chat_template(tokenizer, self.chat_template) else "\n\nRanking:"
        rows, demos = self.pick(self.records(seed), seed), self.demo_rows(seed)
        each = len(demos) <= 2 * len(rows)  # else HELMET leaves out every sample's query at once
        if not each:
            ids = {prompt.get_field(r, self.id_field) for r in rows}
            demos = [d for d in demos if prompt.get_field(d, self.id_field) not in ids]
        out = []
        for i, r in enumerate(rows):
            shown = pick(demos, self.id_field, prompt.get_field(r, self.id_field), self.shots, each) if demos else []
            fields = {"question": prompt.get_field(r, self.question_field),
                      "demos": rerank_text(shown, PASSAGE, self.passages_field, self.question_field)}
            p = prompt.split_prompt(tokenizer, TEMPLATE, fields | {"context": ""}, "context", self.chat_template,
                                    prefix)
            ctxs = list(prompt.get_field(r, self.passages_field))
            passages = [prompt.fill(PASSAGE, {"id": c["id"], "title": c.get("title", ""), "text": c["text"]})
                        for c in ctxs]
            context, n = fit_passages(tokenizer, passages, p.budget(length))
            if n == 0:
                raise ValueError(f"length {length} fits no passage of sample {i}")
            ctx, q, meta = prompt.build(tokenizer, TEMPLATE, fields | {"context": context}, "context", length,
                                        self.chat_template, self.truncation, prefix)
            qrels = {str(c["id"]): float(c.get("label", 0)) for c in ctxs[:n]}
            meta.update(n_passages=n, n_demos=len(shown))
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q, references=[json.dumps(qrels)], meta=meta))
        return out
