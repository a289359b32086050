"""HELMET `cite` (ALCE ASQA / QAMPARI): answer from numbered passages, citing them as `[n]`; scored after
generation by an NLI judge model (citation recall and precision) plus answer correctness.

Data: HELMET's ALCE files (`data/alce/asqa_eval_gtr_top2000.json`, `qampari_eval_gtr_top2000.json`; rows
`question, docs: [{title, text}, ...]` and `qa_pairs: [{short_answers}]` (ASQA) or `answers: [[aliases]]`
(QAMPARI)). The prompt is HELMET's `load_alce`: `{demos}{instruction}\n\nQuestion: {question}\n\n{context}` with
`Document [i](Title: ...): ...` passages and, without a chat template, `\n\nAnswer:` after them. In HELMET the
question comes *before* the passages, so here it is part of the compressed context (the press sees it), and the
question part fed after compression is only the answer prefix / assistant header. Instruction, demo and passage
formats and the `shots` demos (each with its 5 passages) come from HELMET's demo file (`prompts/asqa_revised.json`,
`qampari_revised.json`) when given; ALCE's instructions are built in for `shots: 0`.
`num_docs` passages are shown (HELMET: 30 / 75 / 165 / 345 / 700 at 8k / 16k / 32k / 64k / 128k) and the context
is cut at the right past the length (HELMET cuts the end of the passages too); `num_docs: 0` shows as many whole
passages as fit.

Score per sample (HELMET's "Cite" averages exactly these, on its 0-100 scale): the mean of answer correctness
(ASQA `str_em`, QAMPARI `qampari_rec_top5`), `citation_rec` and `citation_prec`, all kept per sample.
A reasoning model's thoughts (up to `</think>`) are not scored (`strip_thinking`, HELMET's thinking mode:
`kvstudy.tasks.thinking`, for every task).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from kvstudy.metrics import METRICS
from kvstudy.metrics.cite import citation_recall_precision, clean_output
from kvstudy.metrics.nli import DEFAULT_JUDGE, DTYPES, check
from kvstudy.tasks import prompt, thinking
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample
from kvstudy.tasks.helmet_rag import fit_passages, passages_problem
from kvstudy.tasks.hf_base import HFTask, answer_problem, fields_problem

TEMPLATE = "{demos}{instruction}\n\nQuestion: {question}\n\n{context}"
DEMO_PROMPT = "{instruction}\n\nQuestion: {question}\n\n{context}\n\nAnswer: {answer}"
DOC_PROMPT = "Document [{ID}](Title: {title}): {text}"
INSTRUCTIONS = {  # ALCE's (prompts/asqa_default.json, qampari_default.json)
    "asqa": "Instruction: Write an accurate, engaging, and concise answer for the given question using only the"
            " provided search results (some of which might be irrelevant) and cite them properly. Use an unbiased"
            " and journalistic tone. Always cite for any factual claim. When citing several search results, use"
            " [1][2][3]. Cite at least one document and at most three documents in each sentence. If multiple"
            " documents support the sentence, only cite a minimum sufficient subset of the documents.",
    "qampari": "Instruction: Provide a list of accurate answers for the given question using only the provided"
               " search results (some of which might be irrelevant) and cite them properly. Always cite one and"
               " only one document for each answer. Separate answers by commas. For questions that have more than"
               " 5 answers, write at least 5 answers.",
}
CORRECTNESS = {"asqa": "alce_str_em", "qampari": "qampari_rec_top5"}


@register
@dataclass
class HelmetCite(HFTask):
    name = "helmet_cite"
    metric = "alce_cite"
    description = "HELMET cite (ALCE asqa/qampari): cited answer; NLI-judged citation recall+precision, correctness"
    judged: ClassVar[bool] = True  # scored after generation by `judge_rows` (kvstudy.evaluate)
    stop_words: tuple | None = ()  # multi-sentence answers: stop at end of sequence only (HELMET stop_new_line off)

    max_new_tokens: int = 300  # HELMET's generation_max_length for cite
    truncation: str = "right"
    alce_dataset: str = "asqa"  # asqa | qampari
    num_docs: int = 0  # 0: as many whole passages as fit the length
    demo_file: str = ""  # HELMET's prompts/asqa_revised.json / qampari_revised.json
    shots: int = 2
    judge: str = DEFAULT_JUDGE  # hub id or local directory of a T5 NLI model
    judge_dtype: str = "bfloat16"
    at_most_citations: int = 3

    param_ranges = {"num_docs": (0, 100_000), "shots": (0, 100), "at_most_citations": (1, 100)}

    def __post_init__(self):
        super().__post_init__()
        if self.alce_dataset not in INSTRUCTIONS:
            raise ValueError(f"alce_dataset: {self.alce_dataset!r} is not one of {', '.join(INSTRUCTIONS)}")
        if self.shots and not self.demo_file:
            raise ValueError(f"demo_file: shots {self.shots} needs HELMET's ALCE demo file "
                             f"(prompts/{self.alce_dataset}_revised.json), or set shots: 0")
        if self.judge_dtype not in DTYPES:
            raise ValueError(f"judge_dtype: {self.judge_dtype!r} is not one of {', '.join(DTYPES)}")
        if self.num_docs < 0 or self.shots < 0 or self.at_most_citations < 1:
            raise ValueError("num_docs and shots must be >= 0, at_most_citations >= 1")
        try:
            check(self.judge)  # a local judge must exist now; a hub id cannot be checked offline
        except ValueError as e:
            raise ValueError(f"judge: {e}") from None
        self._shown: dict[str, tuple[str, list[dict]]] = {}  # sample id -> (question, passages shown)

    def row_problem(self, row: dict) -> str | None:
        why = fields_problem(row, "question") or passages_problem(row, "docs", ("text",))
        if why:
            return why
        if self.alce_dataset == "qampari":
            answers = row.get("answers")
            if not isinstance(answers, list) or not answers:
                return "answers is not a non-empty list"
            return next((f"answers[{i}]: {p}" for i, a in enumerate(answers)
                         if (p := answer_problem({"a": a}, "a"))), None)
        pairs = row.get("qa_pairs")
        if not isinstance(pairs, list) or not pairs:
            return "qa_pairs is not a non-empty list"
        return next((f"qa_pairs[{i}]: {p}" for i, qa in enumerate(pairs)
                     if (p := answer_problem(qa, "short_answers") if isinstance(qa, dict) else "not an object")), None)

    def _prompts(self) -> tuple[str, str, str, list[dict]]:
        if not self.demo_file:
            return INSTRUCTIONS[self.alce_dataset], DEMO_PROMPT, DOC_PROMPT, []
        path = Path(self.demo_file).expanduser()
        if not path.is_file():  # checked here, not at validation: data files arrive after the config is written
            raise ValueError(f"demo_file {self.demo_file}: no such file")
        spec = json.loads(path.read_text(encoding="utf-8"))
        demos = spec.get("demos", [])
        if len(demos) < self.shots:
            raise ValueError(f"demo_file {self.demo_file}: {len(demos)} demos, shots {self.shots}")
        return spec["instruction"], spec["demo_prompt"], spec["doc_prompt"], demos

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        try:  # before any generation: a judge that cannot be there after it should not cost the GPU time
            check(self.judge, hub_cache=True)
        except ValueError as e:
            raise ValueError(f"task helmet_cite: judge {self.judge!r}: {e}") from None
        instruction, demo_prompt, doc_prompt, demos = self._prompts()

        def docs_text(docs: list[dict]) -> list[str]:
            return [prompt.fill(doc_prompt, {"ID": k + 1, "title": d.get("title", ""), "text": d["text"]})
                    for k, d in enumerate(docs)]

        chat = prompt.uses_chat_template(tokenizer, self.chat_template)
        prefix = "" if chat else "\n\nAnswer:"  # HELMET: the chat template's assistant turn, or `Answer:`
        out = []
        self._shown.clear()
        for i, r in enumerate(self.pick(self.records(seed), seed)):
            rng = np.random.default_rng([seed, 34, i])
            shown_demos = [demos[j] for j in rng.choice(len(demos), self.shots, replace=False)] if self.shots else []
            demo_text = "\n\n\n".join(
                prompt.fill(demo_prompt, {"instruction": instruction, "question": d["question"],
                                          "answer": d["answer"], "context": "\n\n".join(docs_text(d["docs"]))})
                for d in shown_demos)
            fields = {"demos": demo_text + "\n\n\n" if demo_text else "", "instruction": instruction,
                      "question": r["question"]}
            docs = list(r["docs"])[: self.num_docs or None]
            passages = docs_text(docs)
            if self.num_docs:
                context, n = "\n\n".join(passages), len(passages)
            else:
                p = prompt.split_prompt(tokenizer, TEMPLATE, fields | {"context": ""}, "context", self.chat_template,
                                        prefix)
                context, n = fit_passages(tokenizer, passages, p.budget(length))
            if n == 0:
                raise ValueError(f"length {length} fits no passage of sample {i}")
            ctx, q, meta = prompt.build(tokenizer, TEMPLATE, fields | {"context": context}, "context", length,
                                        self.chat_template, self.truncation, prefix)
            if self.alce_dataset == "asqa":
                refs = [json.dumps(qa["short_answers"], ensure_ascii=False) for qa in r["qa_pairs"]]
            else:
                refs = [json.dumps(a, ensure_ascii=False) for a in r["answers"]]
            meta.update(n_passages=n, n_demos=len(shown_demos))
            self._shown[str(i)] = (r["question"], docs[:n])
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q, references=refs, meta=meta))
        return out

    def judge_rows(self, rows: list[dict], device, label: str) -> dict:
        """Score generated rows in place (score + sub-scores) with the NLI judge; returns the result's extra
        `quality` entries. Loads the judge on `device` (the evaluated model should be freed by then)."""
        from kvstudy.metrics.nli import NLIJudge

        t0 = time.perf_counter()
        try:
            judge = NLIJudge(self.judge, self.judge_dtype, str(device))
        except Exception as e:  # one line naming the task and the judge, whatever from_pretrained raised
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(f"task {label!r}: judge {self.judge!r} could not be loaded: {msg}") from None
        correctness = CORRECTNESS[self.alce_dataset]
        for r in rows:
            question, docs = self._shown[r["id"]]
            text = clean_output(r["answer"] if "answer" in r else thinking.answer_text(self, r["prediction"])).strip()
            correct = METRICS[correctness](text, r["references"])
            rec, prec = citation_recall_precision(text, docs, judge,
                                                  question if self.alce_dataset == "qampari" else None,
                                                  self.at_most_citations)
            r.update({"score": (correct + rec + prec) / 3, correctness: correct, "citation_rec": rec,
                      "citation_prec": prec})
        calls = judge.calls
        judge.close()
        keys = (correctness, "citation_rec", "citation_prec")
        return {"sub_scores": {k: sum(r[k] for r in rows) / len(rows) for k in keys},
                "judge": {"model": self.judge, "dtype": self.judge_dtype, "calls": calls,
                          "seconds": time.perf_counter() - t0}}
