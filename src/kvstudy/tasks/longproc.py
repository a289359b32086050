"""LongProc from its JSON files (github.com/princeton-pli/LongProc, `data/<task>/<task>_<size>.json`):
html_to_tsv (row F1), travel_planning (plan accuracy), path_traversal (route partial accuracy),
pseudo_to_code (all checked test cases pass).

- html_to_tsv rows: `task_description, filtering_instruction, tsv_header, gt` and the page as `html_str` or as
  `html_path` (relative to `data_dir`, default the JSON file's folder). The page is the context.
- travel_planning rows: `disambig_question_text, ground_truth_cities, ground_truth_durations` (`A**B`, `5**3`);
  worked examples (`demo_file`: LongProc's travel_planning_icl_examples.json, their `ground_truth_plan`s) are the
  context, the problem is the question.
- path_traversal rows: `context_nl, question_repr [src, dst], answer_nl`.
- pseudo_to_code rows: `problem_id, pseudocode_lines, code_lines, testcases [[input lines], [output lines]]`;
  the pseudocode is the context, the first 10 test cases (those LongProc checks) are the reference. Scoring
  compiles and runs the model's C++ (`kvstudy.metrics.code_exec`), so the task refuses to exist unless the config
  sets `allow_code_execution: true` and g++ is on PATH.
The instructions are ours, in LongProc's output formats (```tsv, <Plan>, <Route>, ```cpp) which the metrics parse.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kvstudy.metrics import EXECUTES_CODE, METRICS
from kvstudy.metrics import code_exec
from kvstudy.tasks import prompt
from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, TaskParamError
from kvstudy.tasks.hf_base import HFTask, answer_problem, fields_problem

SUBTASKS = {
    "html_to_tsv": (
        "tsv_row_f1",
        "Extract information from the HTML page below into a TSV table.\n\n[HTML]\n{context}\n\n[TASK]\n"
        "{task_description}\n{filtering_instruction}\nUse this tab-separated header: {tsv_header}\n"
        "Write the whole table between ```tsv and ```.",
    ),
    "travel_planning": (
        "travel_plan_accuracy",
        "Create a trip plan that visits the cities for the given durations using only direct flights. Count"
        " arrival and departure days as full days. Search day by day, then mark the final plan with <Plan> and"
        " </Plan>, one line per stay as in the examples.\n\n{context}\n\n# Your task\n{question}",
    ),
    "path_traversal": (
        "route_partial_accuracy",
        "Each city has a one-way connection to exactly one other city. Give the route, one line per step in the"
        " format `From <CITY>, take a <TRANSIT> to <CITY>.`, between <Route> and </Route>.\n\n{context}\n\n"
        "Now find the route from {src} to {dst} based on the information above.",
    ),
    "pseudo_to_code": (
        "cpp_tests_pass",
        "Write the C++ program that the pseudocode below describes line by line. The pseudocode is correct and"
        " complete.\n\n[PSEUDOCODE]\n{context}\n\n[INSTRUCTION]\nThese headers are already included, followed by"
        " `using namespace std;`; do not include them again: "
        + ", ".join(line[len("#include "):] for line in code_exec.HEADER.splitlines() if line.startswith("#"))
        + ". Translate the pseudocode line by line and write the whole code between ```cpp and ```.",
    ),
}


_SELF_TESTED: set = set()


def _self_test_once() -> None:
    """g++ compiles and runs under the scoring limits here (code_exec.self_test, about a second): once per compiler
    and environment in a process, since config validation builds samples for every model and length."""
    key = (code_exec.compiler(), tuple(sorted(os.environ.items())), os.getcwd())
    if key not in _SELF_TESTED:
        code_exec.self_test()
        _SELF_TESTED.add(key)


@register
@dataclass
class LongProc(HFTask):
    name = "longproc"
    metric = "tsv_row_f1"  # set by `subtask`
    description = ("LongProc html_to_tsv / travel_planning / path_traversal / pseudo_to_code from its JSON files"
                   " (long outputs)")
    stop_words: tuple | None = ()  # multi-line answers: generation stops at end of sequence only

    n_samples: int = 20
    max_new_tokens: int = 2048
    subtask: str = "html_to_tsv"
    data_dir: str = ""  # where html_path is relative to (default: the JSON file's folder)
    demo_file: str = ""  # travel_planning worked examples
    # travel_planning ships one file for all sizes; LongProc's 2k set is [0, 2048), its 8k set [4096, 8192)
    min_output_tokens: int = 0
    max_output_tokens: int = 0  # 0: no upper bound
    # pseudo_to_code runs the model's C++ (compiled with g++, run under resource limits): an explicit opt-in
    allow_code_execution: bool = False

    param_ranges = {"min_output_tokens": (0, 10_000_000), "max_output_tokens": (0, 10_000_000)}

    def __post_init__(self):
        super().__post_init__()
        if self.max_output_tokens and self.max_output_tokens <= self.min_output_tokens:
            raise TaskParamError("max_output_tokens", f"{self.max_output_tokens} is not above min_output_tokens "
                                 f"{self.min_output_tokens} (0: no upper bound)")
        if self.subtask not in SUBTASKS:
            raise ValueError(f"unknown LongProc subtask {self.subtask!r} ({', '.join(SUBTASKS)})")
        self.metric = SUBTASKS[self.subtask][0]
        assert self.metric in METRICS
        if self.metric in EXECUTES_CODE:
            if self.allow_code_execution is not True:
                raise TaskParamError("allow_code_execution", f"subtask {self.subtask} compiles and runs the model's"
                                     " C++ to score it; set allow_code_execution: true to allow that (run it in a"
                                     " disposable container: resource limits are not a sandbox)")
            if code_exec.compiler() is None:
                raise ValueError(f"subtask {self.subtask} needs g++ on PATH to compile the model's C++ (not found)")

    def row_problem(self, row: dict) -> str | None:
        if self.subtask == "html_to_tsv":
            if row.get("html_str") is None and row.get("html_path") is None:
                return "neither html_str nor html_path"
            return answer_problem(row, "gt")
        if self.subtask == "travel_planning":
            return (fields_problem(row, "disambig_question_text") or answer_problem(row, "ground_truth_cities")
                    or answer_problem(row, "ground_truth_durations"))
        if self.subtask == "pseudo_to_code":
            return fields_problem(row, "pseudocode_lines") or answer_problem(row, "testcases")
        repr_ = row.get("question_repr")
        if not (isinstance(repr_, list) and len(repr_) == 2):
            return "question_repr is not [source, destination]"
        return fields_problem(row, "context_nl") or answer_problem(row, "answer_nl")

    def _fields(self, r: dict) -> tuple[dict, list[str]]:
        if self.subtask == "html_to_tsv":
            html = r.get("html_str")
            if html is None:
                base = Path(self.data_dir) if self.data_dir else Path(self.source).parent
                html = (base / r["html_path"]).read_text(encoding="utf-8")
            keys = ("task_description", "filtering_instruction", "tsv_header")
            return {"context": html} | {k: r.get(k, "") for k in keys}, [r["gt"]]
        if self.subtask == "travel_planning":
            demos = []
            if self.demo_file:
                for d in json.loads(Path(self.demo_file).read_text()):
                    demos.append(f"# Example\n{d['disambig_question_text']}\n<Plan>\n{d['ground_truth_plan']}\n</Plan>")
            ref = {"cities": r["ground_truth_cities"].split("**"),
                   "durations": [int(x) for x in str(r["ground_truth_durations"]).split("**")]}
            return {"context": "\n\n".join(demos), "question": r["disambig_question_text"]}, [json.dumps(ref)]
        if self.subtask == "pseudo_to_code":
            return ({"context": "\n".join(r["pseudocode_lines"])},
                    [json.dumps(r["testcases"][: code_exec.MAX_CASES])])
        src, dst = r["question_repr"]
        return {"context": r["context_nl"], "src": src, "dst": dst}, [r["answer_nl"]]

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        if self.metric in EXECUTES_CODE:  # at job start, before any generation
            try:
                _self_test_once()
            except RuntimeError as e:
                raise ValueError(f"task longproc {self.subtask}: {e}") from None
        template = SUBTASKS[self.subtask][1]
        out = []
        rows = self.records(seed)
        if self.min_output_tokens or self.max_output_tokens:
            hi = self.max_output_tokens or float("inf")
            rows = [r for r in rows if self.min_output_tokens <= r.get("estimated_output_tokens", 0) < hi]
            if not rows:
                raise ValueError(f"source {self.source}: no row with estimated_output_tokens in the range")
        for i, r in enumerate(self.pick(rows, seed)):
            fields, refs = self._fields(r)
            ctx, q, meta = prompt.build(tokenizer, template, fields, "context", length, self.chat_template,
                                        self.truncation)
            meta["source_id"] = str(r.get("id", r.get("task_id", r.get("problem_id", i))))
            out.append(Sample(id=str(i), context_ids=ctx, question_ids=q, references=refs, meta=meta))
        return out
