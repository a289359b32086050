"""Method against method (`compare:`): kvstudy.pairs finds the pairs of variants at equal budget, and
kvstudy.significance_pairs tests them with the same paired tests as against no_press, Holm over every pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kvstudy.config import ConfigError, validate
from kvstudy.pairs import variant_pairs
from kvstudy.significance_pairs import pairwise

PRESSES = [{"method": "no_press"}, {"method": "snapkv", "compression_ratio": [0.5, 0.9], "window_size": 8},
           {"method": "pyramidkv", "compression_ratio": [0.5, 0.7], "window_size": 8},
           {"method": "knorm", "compression_ratio": 0.9}]


def test_methods_pair_at_equal_budget_and_slugs_as_named():
    config = {"presses": PRESSES, "compare": [["snapkv", "pyramidkv"], ["knorm-cr0.90", "pyramidkv-cr0.70-ws8"]]}
    assert variant_pairs(config) == [("snapkv-cr0.50-ws8", "pyramidkv-cr0.50-ws8"),
                                     ("knorm-cr0.90", "pyramidkv-cr0.70-ws8")]
    assert variant_pairs({"presses": PRESSES, "compare": [["pyramidkv", "snapkv"]]}) == [
        ("pyramidkv-cr0.50-ws8", "snapkv-cr0.50-ws8")]


def test_methods_pair_only_variants_whose_shared_settings_agree():
    """SnapKV against PyramidKV at one cache size and two windows: window 8 with window 8, 32 with 32, never
    across (the pair would differ by more than its method)."""
    presses = [{"method": m, "cache_size": 64, "window_size": [8, 32]} for m in ("snapkv", "pyramidkv")]
    assert variant_pairs({"presses": presses, "compare": [["snapkv", "pyramidkv"]]}) == [
        ("snapkv-cs64-ws8", "pyramidkv-cs64-ws8"), ("snapkv-cs64-ws32", "pyramidkv-cs64-ws32")]


@pytest.mark.parametrize("compare, message", [
    ([["snapkv", "h2o"]], "compare[0]: 'h2o' is neither a press method nor a variant of this study"),
    ([["snapkv", "pyramidkv"], ["knorm", "pyramidkv"]], "compare[1]: knorm and pyramidkv have no variants at the "
                                                        "same budget"),
])
def test_a_bad_compare_entry_is_refused_in_one_line(compare, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        variant_pairs({"presses": PRESSES, "compare": compare})


def test_validation_names_the_compare_entry(study):
    study = {**study, "compare": [["snapkv", "tova"]]}
    with pytest.raises(ConfigError) as e:
        validate(study)
    assert str(e.value).startswith("config error: compare[0]: 'tova' is neither") and "\n" not in str(e.value)


def _samples(scores: dict[str, list[float]], task="niah") -> pd.DataFrame:
    rows = []
    for press, values in scores.items():
        for i, s in enumerate(values):
            rows.append({"model": "m", "task": task, "length": 256, "press": press, "method": press.split("-")[0],
                         "compression_ratio": 0.5, "seed": 0, "sample_id": str(i), "score": s})
    return pd.DataFrame(rows)


def test_a_pair_is_tested_like_a_variant_against_no_press():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 40).astype(float)
    b = np.where(rng.random(40) < 0.7, a, 1 - a)  # some discordant pairs
    c = np.where(rng.random(40) < 0.5, a, 1 - a)
    samples = _samples({"a-cr0.50": list(a), "b-cr0.50": list(b), "c-cr0.50": list(c)})
    out = pairwise(samples, [("a-cr0.50", "b-cr0.50"), ("a-cr0.50", "c-cr0.50")])
    assert list(out.press) == ["a-cr0.50", "a-cr0.50"] and list(out.baseline) == ["b-cr0.50", "c-cr0.50"]
    for (_, row), other in zip(out.iterrows(), (b, c)):
        assert row["diff"] == pytest.approx(a.mean() - other.mean())
        n01, n10 = int(((a == 0) & (other == 1)).sum()), int(((a == 1) & (other == 0)).sum())
        assert row.test == "mcnemar_exact"
        assert row.p_value == pytest.approx(stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)
    # Holm over both pairs of the family (model x task), not per pair
    assert out.p_holm.tolist() == pytest.approx(multipletests(out.p_value, method="holm")[1].tolist())
    assert (out.p_holm >= out.p_value).all() and (out.p_holm > out.p_value).any()


def test_pairs_without_common_samples_give_an_empty_table():
    samples = pd.concat([_samples({"a-cr0.50": [1, 0]}, "t1"), _samples({"b-cr0.50": [1, 1]}, "t2")])
    out = pairwise(samples, [("a-cr0.50", "b-cr0.50")])
    assert out.empty and "p_holm" in out.columns
