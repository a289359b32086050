"""HELMET RAG (nq, hotpotqa): answer from many retrieved passages; scored by substring exact match.

HELMET's KILT files (jsonl rows `question, answers, ctxs: [{title, text}, ...]`, the gold passages already mixed
into `ctxs`) are read as they are; as many passages as fit the length are kept, in file order, whole (a passage
is never cut). Which file (nq, hotpotqa; HELMET ships one per length) is the study's `source`. HELMET's configs
add `shots: 2` demos from its `*-train-*_k3_*.jsonl` files (`demo_file`), chosen per sample as HELMET does
(kvstudy.tasks.helmet_demos) and placed before the passages; the passages fill what the demos leave of the length.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstudy.metrics.qa import QA_METRICS
from kvstudy.tasks import prompt
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample
from kvstudy.tasks.helmet_demos import RAG_PASSAGE as PASSAGE
from kvstudy.tasks.helmet_demos import Demos, pick, rag_text
from kvstudy.tasks.hf_base import HFTask, answer_problem, fields_problem

TEMPLATE = ("Use the given documents to write a concise and short answer to the question. Write your answer in the"
            " following format:\nAnswer: [answer]\n\n{demos}{context}\n\nQuestion: {question}")


def fit_passages(tokenizer, passages: list[str], budget: int, sep: str = "\n\n") -> tuple[str, int]:
    """The first passages whose tokens (with separators) fit in `budget`, joined; and how many."""
    used, kept = 0, []
    for p in passages:
        n = len(tokenizer.encode((sep if kept else "") + p, add_special_tokens=False))
        if used + n > budget:
            break
        kept.append(p)
        used += n
    return sep.join(kept), len(kept)


def passages_problem(row: dict, path: str, keys: tuple) -> str | None:
    """Why the passages at `path` are not a list of objects each with `keys` (non-null), or None."""
    passages = row.get(path)
    if not isinstance(passages, list):
        return f"{path} is not a list of passages"
    for i, c in enumerate(passages):
        if not isinstance(c, dict) or any(c.get(k) is None for k in keys):
            return f"{path}[{i}] has no {' / '.join(keys)}"
    return None


@register
@dataclass
class HelmetRAG(Demos, HFTask):
    name = "helmet_rag"
    metric = "substring_exact_match"
    description = "HELMET RAG (nq, hotpotqa): question over retrieved passages filling the length"

    max_new_tokens: int = 20
    metrics: tuple = QA_METRICS  # EM, token F1 and ROUGE-L beside the score (kvstudy.metrics.qa)
    # HELMET runs it without a chat template and stops at newline (configs: use_chat_template false,
    # stop_new_line true); a study may set chat_template: auto and its own stop_words
    chat_template: str = "none"
    stop_words: tuple | None = ("\n",)
    question_field: str = "question"
    answers_field: str = "answers"
    passages_field: str = "ctxs"

    def row_problem(self, row: dict) -> str | None:
        return (fields_problem(row, self.question_field) or answer_problem(row, self.answers_field)
                or passages_problem(row, self.passages_field, ("text",)))

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        # the answer cue opens the assistant turn, or (no chat template) a paragraph of its own, as in HELMET
        prefix = "Answer:" if prompt.uses_chat_template(tokenizer, self.chat_template) else "\n\nAnswer:"
        out, demos = [], self.demo_rows(seed)
        key = "id" if demos and "id" in demos[0] else self.question_field  # HELMET's: id, else the question
        for i, r in enumerate(self.pick(self.records(seed), seed)):
            shown = pick(demos, key, prompt.get_field(r, key), self.shots) if demos else []
            fields = {"question": prompt.get_field(r, self.question_field),
                      "demos": rag_text(shown, self.passages_field, self.question_field, self.answers_field)}
            p = prompt.split_prompt(tokenizer, TEMPLATE, fields | {"context": ""}, "context", self.chat_template,
                                    prefix)
            passages = [prompt.fill(PASSAGE, {"title": c.get("title", ""), "text": c["text"]})
                        for c in prompt.get_field(r, self.passages_field)]
            context, n = fit_passages(tokenizer, passages, p.budget(length))
            if n == 0:
                raise ValueError(f"length {length} fits no passage of sample {i}")
            ctx, q, meta = prompt.build(tokenizer, TEMPLATE, fields | {"context": context}, "context", length,
                                        self.chat_template, self.truncation, prefix)
            answers = prompt.get_field(r, self.answers_field)
            meta.update(n_passages=n, n_passages_available=len(passages), n_demos=len(shown))
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q,
                              references=[answers] if isinstance(answers, str) else list(answers), meta=meta))
        return out
