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
