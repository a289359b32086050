"""Scoring functions, by name: `METRICS[name](prediction, references) -> score in [0, 1]`.

RULER's definitions score a prediction against every reference string. Structured references (rankings,
puzzles, plans) are JSON strings, read with `json.loads` — data is never evaluated as code.
Modules: `qa` (HELMET QA, ICL, ROUGE-L), `ranking` (NDCG@10), `longproc` (routes, countdown, TSV, plans), `loogle`
(LooGLE's QA and cloze scores), `code_exec` (LongProc pseudo_to_code: compiles and runs the model's C++; see its
docstring), `cite` (HELMET cite / ALCE: answer correctness here; citation recall/precision need a judge model,
`nli`, and are scored by the task after generation).
A metric in `DETAILED` also says why it scored what it did (`score_with_detail`); evaluate records that per sample.
"""

from __future__ import annotations

from typing import Callable


def string_match_all(prediction: str, references: list[str]) -> float:
    """RULER `string_match_all`: the fraction of references found (case-insensitive) in the prediction."""
    p = prediction.lower()
    return sum(r.lower() in p for r in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """RULER `string_match_part`: 1 if any reference is found in the prediction."""
    p = prediction.lower()
    return float(any(r.lower() in p for r in references))


def exact_match(prediction: str, references: list[str]) -> float:
    return float(prediction.strip().lower() in {r.strip().lower() for r in references})


from kvstudy.metrics.code_exec import score_cpp  # noqa: E402
from kvstudy.metrics.cite import qampari_rec_top5, str_em  # noqa: E402
from kvstudy.metrics.loogle import loogle_cloze, loogle_cloze_detail, loogle_qa, loogle_qa_detail  # noqa: E402
from kvstudy.metrics.longproc import countdown_solution, route_partial_accuracy, travel_plan_accuracy, tsv_row_f1  # noqa: E402
from kvstudy.metrics.qa import icl_accuracy, rouge_l_f1, substring_exact_match, token_f1  # noqa: E402
from kvstudy.metrics.ranking import ndcg_at_10  # noqa: E402

METRICS: dict[str, Callable[[str, list[str]], float]] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
    "exact_match": exact_match,
    "substring_exact_match": substring_exact_match,
    "rouge_l_f1": rouge_l_f1,
    "token_f1": token_f1,
    "icl_accuracy": icl_accuracy,
    "ndcg_at_10": ndcg_at_10,
    "route_partial_accuracy": route_partial_accuracy,
    "countdown_solution": countdown_solution,
    "tsv_row_f1": tsv_row_f1,
    "travel_plan_accuracy": travel_plan_accuracy,
    "cpp_tests_pass": lambda prediction, references: score_cpp(prediction, references)[0],
    "alce_str_em": str_em,
    "qampari_rec_top5": qampari_rec_top5,
    "loogle_qa": loogle_qa,
    "loogle_cloze": loogle_cloze,
}

# name -> (prediction, references) -> (score, detail dict): metrics that can say why (a compile error, a timeout)
DETAILED: dict[str, Callable[[str, list[str]], tuple[float, dict]]] = {
    "cpp_tests_pass": score_cpp, "loogle_qa": loogle_qa_detail, "loogle_cloze": loogle_cloze_detail}
EXECUTES_CODE = {"cpp_tests_pass"}  # metrics that run model output: a task uses them only with an explicit opt-in


def score_with_detail(name: str, prediction: str, references: list[str]) -> tuple[float, dict | None]:
    if name in DETAILED:
        return DETAILED[name](prediction, references)
    return METRICS[name](prediction, references), None
