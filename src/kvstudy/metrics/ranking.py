"""NDCG@10 for HELMET's re-ranking task (MS MARCO): the model writes a ranking of passage ids `a > b > c`.

Reference: one JSON string `{"doc_id": relevance, ...}` (the qrels). Gains are linear (relevance / log2(rank + 1)),
as `trec_eval`'s ndcg_cut_10 (which HELMET reaches through pytrec_eval); a repeated id counts once.
"""

from __future__ import annotations

import json
import math
import re


def parse_ranking(prediction: str) -> list[str]:
    text = prediction.split("Ranking:", 1)[-1]
    seen: dict[str, None] = {}
    for part in text.split(">"):
        m = re.search(r"[\w-]+", part)
        if m:
            seen.setdefault(m.group(0), None)
    return list(seen)


def ndcg_at_10(prediction: str, references: list[str]) -> float:
    qrels = {str(k): float(v) for k, v in json.loads(references[0]).items()}
    ranked = parse_ranking(prediction)[:10]  # an id outside the qrels keeps its rank with gain 0
    dcg = sum(qrels.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked))
    ideal = sorted(qrels.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
