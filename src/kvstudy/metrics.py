"""Scoring functions, by name. RULER's definitions: a prediction is scored against every reference string."""

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


METRICS: dict[str, Callable[[str, list[str]], float]] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
    "exact_match": exact_match,
}
