"""Long-document QA from a dataset: the kvpress hub format by default, any QA dataset by field mapping.

kvpress's hub datasets (RULER, LongBench, LooGLE, InfiniteBench, ZeroSCROLLS; e.g. `simonjegou/ruler` with name
`4096`) have columns `context, question, answer_prefix, answer, max_new_tokens` (and `task`, the sub-task,
selectable with `subset`); the defaults read them. Other datasets map their fields, dotted through nested
records: NarrativeQA (`deepmind/narrativeqa`) is `context_field: document.text, question_field: question.text,
answer_field: answers.text, scorer: rouge_l_f1`. HELMET's json_kv files: `scorer: substring_exact_match`.
Samples whose rows share a context share `meta.cluster` (one unit to the significance tests).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kvstudy.metrics import EXECUTES_CODE, METRICS
from kvstudy.metrics.qa import QA_METRICS
from kvstudy.tasks import prompt
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, TaskParamError
from kvstudy.tasks.hf_base import HFTask, answer_problem, fields_problem


def context_cluster(context) -> str:
    """The cluster id of a sample: questions on one document (kvpress groups them; NarrativeQA asks ~30 per story)
    share it, so the significance tests count the document once (kvstudy.significance)."""
    return "ctx:" + hashlib.sha1(str(context).encode()).hexdigest()[:16]


@register
@dataclass
class HFQA(HFTask):
    name = "hf_qa"
    metric = "string_match_all"  # default of `scorer`
    description = "QA over a long document from datasets (kvpress format by default; fields configurable)"

    max_new_tokens: int = 64  # used when the row has no max_new_tokens
    scorer: str = "string_match_all"  # any registered metric
    metrics: tuple = QA_METRICS  # EM, token F1 and ROUGE-L beside the score (kvstudy.metrics.qa)
    context_field: str = "context"
    question_field: str = "question"
    answer_field: str = "answer"  # a string or a list of strings
    answer_prefix_field: str = "answer_prefix"  # optional column
    max_new_tokens_field: str = "max_new_tokens"  # optional column
    subset_field: str = "task"
    subset: str = ""  # keep only rows whose subset_field equals this (e.g. niah_single_1)
    template: str = "{context}{question}"  # kvpress: the question follows the context directly

    def __post_init__(self):
        super().__post_init__()
        if self.scorer not in METRICS:
            raise ValueError(f"scorer {self.scorer!r} is not a registered metric ({', '.join(METRICS)})")
        if self.scorer in EXECUTES_CODE:  # only behind an explicit opt-in (longproc pseudo_to_code)
            raise ValueError(f"scorer {self.scorer!r} runs generated code; use longproc's pseudo_to_code subtask")
        self.metric = self.scorer
        names = prompt._FIELD.findall(self.template)
        if names.count("context") != 1 or set(names) - {"context", "question"}:
            raise TaskParamError("template", f"{self.template!r} must hold {{context}} once and no placeholder but "
                                 "{question}")

    def row_problem(self, row: dict) -> str | None:
        if self.subset and str(row.get(self.subset_field)) != self.subset:
            return None  # another subset's row: not used
        return fields_problem(row, self.context_field, self.question_field) or answer_problem(row, self.answer_field)

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        rows = self.records(seed)
        if self.subset:
            rows = [r for r in rows if str(prompt.get_field(r, self.subset_field)) == self.subset]
            if not rows:
                raise ValueError(f"source {self.source}: no row with {self.subset_field} == {self.subset!r}")
        out = []
        for i, r in enumerate(self.pick(rows, seed)):
            answer = prompt.get_field(r, self.answer_field)
            refs = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
            prefix = str(r.get(self.answer_prefix_field) or "")
            fields = {"context": prompt.get_field(r, self.context_field),
                      "question": prompt.get_field(r, self.question_field)}
            ctx, q, meta = prompt.build(tokenizer, self.template, fields, "context", length, self.chat_template,
                                        self.truncation, prefix)
            if r.get(self.max_new_tokens_field):
                meta["max_new_tokens"] = int(r[self.max_new_tokens_field])
            if "id" in r:
                meta["source_id"] = str(r["id"])
            meta["cluster"] = context_cluster(fields["context"])
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q, references=refs, meta=meta))
        return out
