import math

import pytest

from kvstudy.metrics import exact_match, string_match_all, string_match_part


def test_string_match_all_is_the_fraction_of_references_found():
    assert string_match_all("the answer is V017 and v018", ["v017", "v018"]) == 1.0
    assert string_match_all("v017", ["v017", "v018"]) == 0.5
    assert string_match_all("", ["v017"]) == 0.0


def test_string_match_part_and_exact_match():
    assert string_match_part("v018", ["v017", "v018"]) == 1.0
    assert string_match_part("v019", ["v017", "v018"]) == 0.0
    assert exact_match(" V017 ", ["v017"]) == 1.0
    assert exact_match("v017 v018", ["v017"]) == 0.0


# --- HELMET / LongProc metrics (issue 4) ---
import json  # noqa: E402

from kvstudy.metrics import METRICS  # noqa: E402


def test_substring_exact_match_normalises_like_squad():
    m = METRICS["substring_exact_match"]
    assert m("Answer: The Eiffel-Tower, in Paris.", ["eiffel tower"]) == 0.0  # punctuation is removed, not spaced
    assert m("Answer: the Eiffel Tower!", ["Eiffel Tower"]) == 1.0
    assert m("London", ["Paris", "London"]) == 1.0 and m("Lyon", ["Paris"]) == 0.0


def test_token_f1_counts_shared_words_with_multiplicity():
    m = METRICS["token_f1"]
    # "the" is dropped by the normalisation; shared: paris x1 of prediction [paris, paris, france] and [paris]
    assert m("Paris, Paris France", ["the Paris"]) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert m("Paris", ["London", "paris."]) == 1.0  # best over the references, punctuation and case ignored
    assert m("", ["Paris"]) == 0.0 and m("Berlin", ["Paris"]) == 0.0


def test_rouge_l_f1_is_the_lcs_f1():
    m = METRICS["rouge_l_f1"]
    assert m("p q r s", ["p q r s"]) == 1.0
    # LCS("x p y q", "p q") = 2: precision 2/4, recall 2/2 -> F1 2/3
    assert m("x p y q", ["p q"]) == pytest.approx(2 / 3)
    assert m("nothing here", ["p q"]) == 0.0
    assert m("p q", ["z", "p q"]) == 1.0  # best reference
    assert m("The Dragon!", ["dragon"]) == 1.0  # normalised: case, punctuation, articles


def test_ndcg_at_10_uses_ranks_and_linear_gains():
    qrels = [json.dumps({"a": 2, "b": 1, "c": 0})]
    m = METRICS["ndcg_at_10"]
    assert m("Ranking: a > b > c", qrels) == 1.0
    ideal = 2 + 1 / math.log2(3)
    assert m("Ranking: c > a > b", qrels) == pytest.approx((2 / math.log2(3) + 1 / 2) / ideal)
    assert m("Ranking: zz > a", qrels) == pytest.approx((2 / math.log2(3)) / ideal)  # unknown ids keep their rank
    assert m("no ranking", qrels) == 0.0


def test_icl_accuracy_reads_the_label():
    m = METRICS["icl_accuracy"]
    assert m("label: 12\nmore", ["12"]) == 1.0 and m("12", ["12"]) == 1.0 and m("label: 13", ["12"]) == 0.0


def test_countdown_solution_rejects_wrong_arithmetic_reuse_and_target():
    ref = [json.dumps({"numbers": [3, 5, 7, 2], "target": 24})]
    m = METRICS["countdown_solution"]
    assert m("<Solution>\n7 - 5 = 2\n2 * 2 = 4\n4 * 3 = 12\n</Solution>", ref) == 0.0  # ends at 12
    assert m("<Solution>\n7 + 5 = 12\n12 * 2 = 24\n24 * 3 = 72\n</Solution>", ref) == 0.0
    assert m("<Solution>\n7 + 5 = 12\n3 - 2 = 1\n12 * 2 = 24\n</Solution>", ref) == 0.0  # 2 used twice
    assert m("<Solution>\n7 + 5 = 13\n3 * 2 = 6\n13 + 6 = 19\n</Solution>", ref) == 0.0  # wrong sum
    assert m("<Solution>\n5 * 3 = 15\n15 + 7 = 22\n22 + 2 = 24\n</Solution>", ref) == 1.0
    assert m("<Solution>\n__import__('os') = 1\n</Solution>", ref) == 0.0  # parsed, never evaluated


def test_route_partial_accuracy_counts_the_right_prefix():
    ref = ["From A, take a bus to B.\nFrom B, take a train to C.\nFrom C, take a ferry to D."]
    m = METRICS["route_partial_accuracy"]
    assert m("<Route>\n" + ref[0] + "\n</Route>", ref) == 1.0
    assert m("<Route>\nFrom A, take a bus to B.\nFrom B, take a bus to C.\nFrom C, take a ferry to D.", ref) == pytest.approx(1 / 3)
    assert m("", ref) == 0.0


def test_tsv_row_f1():
    gold = ["a\tb\n1\tx\n2\ty\n3\tz"]
    m = METRICS["tsv_row_f1"]
    assert m("```tsv\na\tb\n1\tx\n2\ty\n3\tz\n```", gold) == 1.0
    assert m("a\tb\n1\tX.\n9\tq", gold) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # cells normalised


def test_travel_plan_accuracy():
    ref = [json.dumps({"cities": ["Rome", "Oslo"], "durations": [3, 4]})]
    good = "<Plan>**Day 1-3:** Arriving in Rome and visit Rome for 3 days.\n**Day 3-6:** Visit Oslo for 4 days.</Plan>"
    m = METRICS["travel_plan_accuracy"]
    assert m(good, ref) == 1.0 and m(good.replace("Oslo", "Bergen"), ref) == 0.0
