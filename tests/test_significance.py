"""significance(): paired tests against no_press, checked against hand computations."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from kvstudy.significance import (
    SEED_COLUMNS,
    bootstrap_ci,
    holm,
    holm_by_family,
    seed_significance,
    significance,
)
from kvstudy.significance_write import write_significance

COLUMNS = ["model", "task", "length", "press", "method", "compression_ratio", "seed", "baseline", "family",
           "n", "n_units", "score", "baseline_score", "diff", "test", "statistic", "p_value", "p_holm", "significant",
           "ci_low", "ci_high", "effect_size", "higher_is_better", "better", "tested_on", "tested_diff"]


def rows(press, scores, task="t", seed=0, ids=None, model="m", length=1024):
    ids = ids if ids is not None else [str(i) for i in range(len(scores))]
    return [{"model": model, "task": task, "length": length, "press": press, "method": press.split("-")[0],
             "compression_ratio": 0.0 if press == "no_press" else 0.5, "seed": seed, "sample_id": i, "score": s}
            for i, s in zip(ids, scores)]


# b = 8 (variant right, baseline wrong), c = 1, plus 2 both right and 1 both wrong: n = 12.
BASE_01 = [0] * 8 + [1] + [1, 1, 0]
VAR_01 = [1] * 8 + [0] + [1, 1, 0]
BASE_CONT = [0.5, 0.2, 0.9, 0.4, 0.1, 0.3]
VAR_CONT = [0.6, 0.4, 1.2, 0.0, 0.6, 0.9]  # diffs 0.1, 0.2, 0.3, -0.4, 0.5, 0.6: no ties, no zeros


def one(samples, **kw):
    out = significance(pd.DataFrame(samples), **kw)
    assert len(out) == 1
    return out.iloc[0]


def test_mcnemar_exact_matches_hand_binomial():
    r = one(rows("no_press", BASE_01) + rows("snapkv-cr0.50", VAR_01))
    expected = 2 * (comb(9, 0) + comb(9, 1)) / 2**9
    assert r.test == "mcnemar_exact" and r.n == 12
    assert r.p_value == pytest.approx(expected)
    assert r.statistic == 1
    assert r.effect_size == pytest.approx(8 / 9 - 0.5)
    assert r["diff"] == pytest.approx(10 / 12 - 3 / 12)
    assert r.score == pytest.approx(10 / 12) and r.baseline_score == pytest.approx(3 / 12)
    assert r.p_holm == pytest.approx(expected) and bool(r.significant) is True  # family of one
    assert (r.family, r.baseline, r.method, r.compression_ratio) == ("m/t", "no_press", "snapkv", 0.5)


def test_columns_and_no_baseline():
    assert list(significance(pd.DataFrame(rows("no_press", [1]) + rows("a", [0]))).columns) == COLUMNS
    out = significance(pd.DataFrame(rows("a", [1, 0]) + rows("b", [0, 0])))  # no no_press at all
    assert out.empty and list(out.columns) == COLUMNS


def test_other_baseline():
    r = one(rows("a", [1, 0]) + rows("b", [1, 1]), baseline="a")
    assert (r.press, r.baseline, r.n) == ("b", "a", 2)


def test_mcnemar_without_discordant_pairs():
    r = one(rows("no_press", [1, 0, 1]) + rows("a", [1, 0, 1]))
    assert (r.test, r.p_value, r.statistic, r.effect_size, r["diff"]) == ("mcnemar_exact", 1.0, 0, 0.0, 0.0)
    assert bool(r.significant) is False


def test_wilcoxon_matches_scipy_and_exact_enumeration():
    r = one(rows("no_press", BASE_CONT) + rows("a", VAR_CONT))
    ref = stats.wilcoxon(VAR_CONT, BASE_CONT, zero_method="zsplit")
    assert r.test == "wilcoxon"
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    # by hand: ranks 1..6, negative rank 4 -> T = 4; exact two-sided p = 2 * P(rank sum of a random sign set <= 4)
    sums = [sum(s) for k in range(7) for s in itertools.combinations(range(1, 7), k)]
    assert r.statistic == 4
    assert r.p_value == pytest.approx(2 * sum(x <= 4 for x in sums) / 2**6)
    assert r.effect_size == pytest.approx((17 - 4) / 21)  # rank-biserial (R+ - R-) / (R+ + R-)
    assert r["diff"] == pytest.approx(np.mean(np.subtract(VAR_CONT, BASE_CONT)))


def test_wilcoxon_with_zeros_uses_zsplit():
    base, var = [0.5, 0.5, 0.2, 0.3, 0.8, 0.1], [0.5, 0.9, 0.1, 0.6, 1.0, 0.4]
    r = one(rows("no_press", base) + rows("a", var))
    ref = stats.wilcoxon(var, base, zero_method="zsplit")
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)


def test_wilcoxon_all_equal_gives_p_one():
    r = one(rows("no_press", [0.3, 0.5, 0.7]) + rows("a", [0.3, 0.5, 0.7]))
    assert (r.test, r.p_value, r.effect_size, r.ci_low, r.ci_high) == ("wilcoxon", 1.0, 0.0, 0.0, 0.0)


def test_holm_known_vectors():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm(np.array([0.4, 0.7, 0.02])), [0.8, 0.8, 0.06])
    np.testing.assert_allclose(holm(np.array([0.6, 0.9])), [1.0, 1.0])


def test_holm_within_model_task_family():
    samples = (rows("no_press", BASE_01) + rows("a", VAR_01) + rows("b", BASE_CONT[:3] + [1, 1, 1, 1, 1, 0, 1, 1, 0])
               + rows("no_press", BASE_01, task="u") + rows("a", VAR_01, task="u"))
    out = significance(pd.DataFrame(samples)).set_index(["task", "press"])
    t = out.loc["t"]
    np.testing.assert_allclose(t.p_holm, holm(t.p_value.to_numpy()))
    assert t.loc["a", "p_holm"] == pytest.approx(2 * t.loc["a", "p_value"])  # smaller p of two: x2
    assert out.loc[("u", "a"), "p_holm"] == out.loc[("u", "a"), "p_value"]  # its own family of one
    assert set(out.family) == {"m/t", "m/u"}
    assert (out.significant == (out.p_holm < 0.05)).all()


def test_pairs_are_inner_join_on_sample_id():
    samples = (rows("no_press", [1, 0, 1, 0], ids=["01", "1", "2", "3"])
               + rows("a", [1, 1, 1], ids=["01", "1", "9"])
               + rows("a", [1, 1], seed=1))  # seed 1 has no baseline: no row
    r = one(samples)
    assert r.n == 2 and r.seed == 0
    assert r.baseline_score == pytest.approx(0.5) and r.score == 1.0  # "1" pairs with "1", not "01"


def test_bootstrap_ci_contains_diff_and_is_deterministic():
    samples = pd.DataFrame(rows("no_press", BASE_CONT * 5) + rows("a", VAR_CONT * 5))
    first, again = significance(samples, seed=3).iloc[0], significance(samples, seed=3).iloc[0]
    other = significance(samples, seed=4).iloc[0]
    assert first.ci_low < first["diff"] < first.ci_high
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_bootstrap_ci_matches_a_loop():
    d = np.array([0.1, -0.2, 0.4, 0.3, 0.0])
    rng = np.random.default_rng(7)
    means = [d[rng.integers(0, 5, size=5)].mean() for _ in range(200)]
    assert bootstrap_ci(d, 0.9, n_boot=200, seed=7) == pytest.approx(tuple(np.percentile(means, [5, 95])))


def test_write_significance_keeps_string_ids(tmp_path):
    samples = pd.DataFrame(rows("no_press", [1, 0], ids=["01", "1"]) + rows("a", [0, 1], ids=["01", "1"]))
    samples.to_csv(tmp_path / "samples.csv", index=False)
    write_significance(tmp_path / "samples.csv", tmp_path / "significance.csv")
    written = pd.read_csv(tmp_path / "significance.csv")
    assert list(written.columns) == COLUMNS
    assert written.loc[0, "n"] == 2 and written.loc[0, "statistic"] == 1 and written.loc[0, "p_value"] == 1.0


@pytest.mark.parametrize("b,c,both", [(8, 1, 3), (5, 5, 0), (0, 7, 2), (13, 4, 10), (30, 21, 5)])
def test_mcnemar_matches_statsmodels_and_binomtest(b, c, both):
    base = [0] * b + [1] * c + [1] * both + [0] * 3
    var = [1] * b + [0] * c + [1] * both + [0] * 3
    r = one(rows("no_press", base) + rows("a", var))
    ref = sm_mcnemar([[both, c], [b, 3]], exact=True)  # rows: baseline right/wrong; cols: variant right/wrong
    assert r.p_value == pytest.approx(ref.pvalue)
    assert r.statistic == ref.statistic == min(b, c)
    assert r.p_value == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)


def test_many_comparisons_match_one_at_a_time():
    rng = np.random.default_rng(5)
    samples = rows("no_press", list(rng.integers(0, 2, 30)))
    for press in ("a", "b", "c"):
        samples += rows(press, list(rng.integers(0, 2, 30)))
    # continuous: scipy picks exact / permutation / normal from ties and zeros, so cover each with 2 variants
    for task, n, digits in (("u", 12, 6), ("v", 12, 1), ("w", 20, 1), ("x", 20, 6), ("y", 60, 6)):
        for press in ("no_press", "a", "b"):
            samples += rows(press, list(rng.uniform(size=n).round(digits)), task=task)
    together = significance(pd.DataFrame(samples)).set_index(["task", "press"])
    for (task, press), r in together.iterrows():
        alone = one([s for s in samples if s["task"] == task and s["press"] in ("no_press", press)])
        for col in ("n", "statistic", "p_value", "ci_low", "ci_high", "effect_size", "diff"):
            assert r[col] == pytest.approx(alone[col]), (task, press, col)
    t = together.loc["t"]
    assert t.loc["a", "test"] == "mcnemar_exact" and together.loc[("u", "a"), "test"] == "wilcoxon"
    np.testing.assert_allclose(t.p_holm, holm(t.p_value.to_numpy()))


def step_down_rejections(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's procedure as he stated it (1979): sort the p-values, reject H_(1), H_(2), ... while
    p_(i) <= alpha / (m - i) (i from 0), stop at the first that is not; nothing after it is rejected."""
    m, reject = len(p), np.zeros(len(p), bool)
    for i, k in enumerate(np.argsort(p, kind="stable")):
        if p[k] > alpha / (m - i):
            break
        reject[k] = True
    return reject


def test_holm_known_values_by_hand():
    # p sorted: 0.005 (x4 = 0.02), 0.011 (x3 = 0.033), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04; already 0.04)
    np.testing.assert_allclose(holm(np.array([0.02, 0.005, 0.04, 0.011])), [0.04, 0.02, 0.04, 0.033])
    # the step-down maximum carries a large early value forward: 0.01 x 3 = 0.03 > 0.012 x 2 = 0.024
    np.testing.assert_allclose(holm(np.array([0.012, 0.01, 0.5])), [0.03, 0.03, 0.5])


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects():
    """A property, not a second copy of the formula: p_holm <= alpha picks out Holm's rejections at every alpha, and
    the adjusted values keep the order of the raw ones, never fall below them and never exceed 1."""
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 17, 40):
        p = np.concatenate([rng.uniform(0, 0.02, m // 2), rng.uniform(0, 1, m - m // 2)])
        adjusted = holm(p)
        assert (adjusted >= p).all() and (adjusted <= 1).all()
        order = np.argsort(p, kind="stable")
        assert (np.diff(adjusted[order]) >= 0).all()
        for alpha in (0.001, 0.01, 0.05, 0.2):
            np.testing.assert_array_equal(adjusted <= alpha, step_down_rejections(p, alpha))


def test_step_down_rejections_catch_a_wrong_correction():
    """The property above can fail: plain Bonferroni (m x p), or no correction, rejects a different set here."""
    p = np.array([0.01, 0.02, 0.03])  # Holm at 0.05: 0.03, 0.04, 0.03 -> all three; Bonferroni: 0.03, 0.06, 0.09
    np.testing.assert_array_equal(step_down_rejections(p, 0.05), [True, True, True])
    assert not np.array_equal(np.minimum(3 * p, 1) <= 0.05, step_down_rejections(p, 0.05))
    # no correction rejects 0.01 at 0.02; Holm does not (0.01 > 0.02 / 3), and so rejects nothing after it either
    np.testing.assert_array_equal(step_down_rejections(np.array([0.01, 0.2, 0.015]), 0.02), [False, False, False])


def test_holm_by_family_is_holm_within_each_family():
    """holm_by_family is written by hand (vectorised, kvstudy.significance): family by family it must equal the
    library's Holm (statsmodels' multipletests)."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.1, 40)
    fams = rng.choice(["m/a", "m/b", "n/a", "z"], 40)
    adjusted = holm_by_family(p, fams)
    for fam in set(fams):
        np.testing.assert_allclose(adjusted[fams == fam], multipletests(p[fams == fam], method="holm")[1])
        np.testing.assert_array_equal(adjusted[fams == fam] <= 0.05, step_down_rejections(p[fams == fam], 0.05))


def test_lower_is_better_flips_the_direction_not_the_test():
    base, var = [3.0, 3.1, 2.9, 3.2, 3.0, 3.1, 2.8, 3.3], [4.0, 4.2, 3.9, 4.4, 4.1, 4.3, 3.8, 4.5]
    higher = one(rows("no_press", base) + rows("a", var))
    samples = pd.DataFrame(rows("no_press", base) + rows("a", var)).assign(higher_is_better=False)
    lower = one(samples.to_dict("records"))
    assert higher.p_value == lower.p_value and higher["diff"] == lower["diff"] > 0
    assert bool(higher.significant) and (higher.better, lower.better) == ("better", "worse")
    assert bool(lower.higher_is_better) is False


def test_welch_across_seeds_matches_the_formula():
    base_seeds = {0: [1, 1, 1, 0], 1: [1, 1, 1, 1], 2: [1, 0, 1, 1]}
    var_seeds = {0: [0, 1, 0, 0], 1: [1, 0, 0, 0], 2: [0, 0, 0, 1], 3: [1, 1, 0, 0]}
    samples = [r for s, sc in base_seeds.items() for r in rows("no_press", sc, seed=s)]
    samples += [r for s, sc in var_seeds.items() for r in rows("a", sc, seed=s)]
    samples += rows("b", [1, 1, 1, 1], seed=0)  # one seed only: no across-seed test
    out = seed_significance(pd.DataFrame(samples))
    assert list(out.columns) == SEED_COLUMNS and len(out) == 1
    r = out.iloc[0]
    x = np.array([np.mean(v) for v in var_seeds.values()])
    y = np.array([np.mean(v) for v in base_seeds.values()])
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / np.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    assert (r.press, r.n_seeds, r.n_seeds_baseline, r.test) == ("a", 4, 3, "welch_t")
    assert r.statistic == pytest.approx(t) and r.df == pytest.approx(df)
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert r.p_holm == pytest.approx(r.p_value)


def test_welch_needs_two_seeds_per_side():
    assert seed_significance(pd.DataFrame(rows("no_press", [1, 0]) + rows("a", [0, 0]))).empty


def test_write_significance_writes_the_seed_table(tmp_path):
    samples = pd.DataFrame([r for s in (0, 1) for r in rows("no_press", [1, 1, 0], seed=s) + rows("a", [0, s, 0], seed=s)])
    samples["extra_column"] = "ignored"
    samples.to_csv(tmp_path / "samples.csv", index=False)
    write_significance(tmp_path / "samples.csv", tmp_path / "sig.csv", seeds_csv=tmp_path / "seeds.csv")
    assert len(pd.read_csv(tmp_path / "sig.csv")) == 2
    assert list(pd.read_csv(tmp_path / "seeds.csv").columns) == SEED_COLUMNS


# Perplexity: per-sample mean NLL and scored tokens. The variant's last sample is short and very bad, so the mean of
# per-sample perplexities (about 1,000) and the corpus perplexity (about 3.3) differ by far more than 10x.
NLL_BASE = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.2]
NLL_VAR = [1.1, 1.2, 1.05, 1.3, 1.1, 1.25, 1.15, 9.0]
TOKENS = [500, 500, 500, 500, 500, 500, 500, 10]


def ppl_rows(press, nlls, seed=0):
    out = rows(press, [float(np.exp(x)) for x in nlls], task="ppl", seed=seed)
    for r, x, n in zip(out, nlls, TOKENS):
        r.update(nll=x, nll_sum=x * n, scored_tokens=n, higher_is_better=False)
    return out


def corpus(nlls):
    return float(np.exp(np.dot(nlls, TOKENS) / sum(TOKENS)))


def test_perplexity_tests_the_paired_nll_and_reports_corpus_perplexity():
    r = one(ppl_rows("no_press", NLL_BASE) + ppl_rows("knorm-cr0.50", NLL_VAR))
    mean_of_ppl = float(np.mean(np.exp(NLL_VAR)))
    assert mean_of_ppl > 10 * corpus(NLL_VAR)  # the fixture tells the two aggregations apart
    assert r.score == pytest.approx(corpus(NLL_VAR)) and r.baseline_score == pytest.approx(corpus(NLL_BASE))
    assert r["diff"] == pytest.approx(corpus(NLL_VAR) - corpus(NLL_BASE))
    ref = stats.wilcoxon(NLL_VAR, NLL_BASE, zero_method="zsplit")
    assert (r.test, r.tested_on) == ("wilcoxon", "nll")
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    d = np.subtract(NLL_VAR, NLL_BASE)
    assert r.tested_diff == pytest.approx(d.mean())
    assert (r.ci_low, r.ci_high) == pytest.approx(bootstrap_ci(d))
    assert bool(r.significant) and r.better == "worse"  # higher NLL, lower is better


def test_scores_keep_testing_the_score():
    r = one(rows("no_press", BASE_01) + rows("a", VAR_01))
    assert r.tested_on == "score" and r.tested_diff == pytest.approx(r["diff"])


def test_perplexity_across_seeds_tests_the_corpus_nll():
    shift = {0: 0.0, 1: 0.05, 2: -0.03}
    samples = [r for s, k in shift.items() for r in ppl_rows("no_press", np.add(NLL_BASE, k), seed=s)
               + ppl_rows("a", np.add(NLL_VAR, 2 * k), seed=s)]
    r = seed_significance(pd.DataFrame(samples)).iloc[0]
    var = [np.log(corpus(np.add(NLL_VAR, 2 * k))) for k in shift.values()]
    base = [np.log(corpus(np.add(NLL_BASE, k))) for k in shift.values()]
    ref = stats.ttest_ind(var, base, equal_var=False)
    assert r.tested_on == "nll" and r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    assert r.score == pytest.approx(np.mean(np.exp(var))) and r.baseline_score == pytest.approx(np.mean(np.exp(base)))
    assert r.tested_diff == pytest.approx(np.mean(var) - np.mean(base))


# --- the unit of a test: clusters (issue 15) ------------------------------------------------------------------


def clustered(press, scores, clusters, task="t", seed=0, model="m", length=1024):
    out = rows(press, scores, task, seed, model=model, length=length)
    return [{**r, "cluster": c} for r, c in zip(out, clusters)]


def test_replicates_a_position_press_fails_together_count_once():
    """The old failure: niah's 10 depths x 3 replicates at one needle offset each. A press that chooses by position
    fails all three replicates of a depth or none; McNemar over 30 samples calls 12 losses in 4 depths p < 0.001,
    while only 4 independent units differ: the sign test over depths gives 0.125, and so does the cluster test."""
    depth = [str(i % 10) for i in range(30)]
    lost = [1 if i % 10 >= 4 else 0 for i in range(30)]  # depths 0-3 evicted in every replicate
    naive = one(rows("no_press", [1] * 30) + rows("v", lost))
    assert naive["test"] == "mcnemar_exact" and naive["n_units"] == 30
    assert naive["p_value"] == pytest.approx(stats.binomtest(0, 12).pvalue) and naive["p_value"] < 0.001
    r = one(clustered("no_press", [1] * 30, depth) + clustered("v", lost, depth))
    assert r["test"] == "cluster_sign_flip" and r["n"] == 30 and r["n_units"] == 10
    assert r["p_value"] == pytest.approx(stats.binomtest(0, 4).pvalue) == pytest.approx(0.125)
    assert not r["significant"] and r["better"] == ""
    assert r["diff"] == pytest.approx(-0.4) and r["statistic"] == pytest.approx(-12 / np.sqrt(4 * 9))


def test_clusters_of_one_sample_are_todays_tests():
    for base, var in ((BASE_01, VAR_01), (BASE_CONT, VAR_CONT)):
        ids = [f"s{i}" for i in range(len(base))]
        plain = one(rows("no_press", base) + rows("v", var))
        alone = one(clustered("no_press", base, ids) + clustered("v", var, ids))
        assert plain.drop("n_units").equals(alone.drop("n_units"))
        assert plain["n_units"] == alone["n_units"] == len(base)
        assert plain["test"] in ("mcnemar_exact", "wilcoxon")


@pytest.mark.parametrize("n_units", [3, 7, 12])
def test_cluster_test_is_scipys_exact_sign_flip_permutation_test(n_units):
    """Against scipy.stats.permutation_test (paired samples: swapping a unit's variant and baseline flips its sum)."""
    rng = np.random.default_rng(n_units)
    sizes = rng.integers(1, 4, n_units)
    clusters = np.repeat(np.arange(n_units), sizes).astype(str)
    base = rng.uniform(size=len(clusters)).round(2)
    var = (base + rng.normal(0.1, 0.3, len(clusters))).round(2)
    r = one(clustered("no_press", list(base), clusters) + clustered("v", list(var), clusters))
    sums = pd.Series(var - base).groupby(clusters).sum().to_numpy()
    want = stats.permutation_test((sums, np.zeros(n_units)), lambda x, y, axis: np.sum(x - y, axis=axis),
                                  permutation_type="samples", vectorized=True, n_resamples=np.inf,
                                  alternative="two-sided")
    assert r["n_units"] == n_units and r["test"] == "cluster_sign_flip"
    assert r["p_value"] == pytest.approx(want.pvalue, rel=1e-9)


def test_sign_flip_of_single_pairs_is_exact_mcnemar():
    from kvstudy.sign_flip import sign_flip

    for b, c, both in ((8, 1, 3), (5, 5, 2), (0, 6, 4), (2, 0, 0)):
        d = np.array([1.0] * b + [-1.0] * c + [0.0] * both)
        p = sign_flip(d[None, :])[1][0]
        want = stats.binomtest(min(b, c), b + c).pvalue if b + c else 1.0
        assert p == pytest.approx(want, rel=1e-12), (b, c)


def test_many_units_are_a_monte_carlo_sign_flip_test_within_its_error():
    from kvstudy.sign_flip import EXACT_UNITS, N_PERM, sign_flip

    rng = np.random.default_rng(3)
    units = rng.normal(0.15, 1.0, size=(6, 40))
    assert units.shape[1] > EXACT_UNITS
    z, p = sign_flip(units, seed=0)
    for row, got in zip(units, p):
        want = stats.permutation_test((row, np.zeros_like(row)), lambda x, y, axis: np.sum(x - y, axis=axis),
                                      permutation_type="samples", vectorized=True, n_resamples=20_000,
                                      random_state=1).pvalue
        se = np.sqrt(want * (1 - want) / N_PERM) + np.sqrt(want * (1 - want) / 20_000)
        assert abs(got - want) < 4 * se + 1e-3
    assert np.array_equal(p, sign_flip(units, seed=0)[1])  # seeded


def test_cluster_bootstrap_resamples_clusters():
    """The CI of a clustered comparison is the percentile interval of resampled clusters' sums / sizes, and with
    perfectly correlated replicates it is as wide as the CI of the cluster means, not narrower."""
    from kvstudy.sign_flip import resample_counts

    depth = [str(i % 10) for i in range(30)]
    lost = [1 if i % 10 >= 4 else 0 for i in range(30)]
    r = one(clustered("no_press", [1] * 30, depth) + clustered("v", lost, depth))
    sums = pd.Series(np.array(lost) - 1.0).groupby(depth, sort=False).sum().to_numpy()
    counts = resample_counts(10, 2000, 0)
    means = (counts @ sums) / (counts @ np.full(10, 3.0))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    per_depth = bootstrap_ci(sums / 3)  # one unit per depth: the same resamples, the same interval
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(per_depth)
    naive = one(rows("no_press", [1] * 30) + rows("v", lost))
    assert naive["ci_high"] - naive["ci_low"] < r["ci_high"] - r["ci_low"]


def test_write_significance_reads_clusters_as_strings(tmp_path):
    depth = ["01", "1"] * 6  # two clusters that a number parser would merge
    lost = [0, 1] * 6
    pd.DataFrame(clustered("no_press", [1] * 12, depth) + clustered("v", lost, depth)).to_csv(
        tmp_path / "samples.csv", index=False)
    write_significance(tmp_path / "samples.csv", tmp_path / "significance.csv")
    row = pd.read_csv(tmp_path / "significance.csv").iloc[0]
    assert row["n_units"] == 2 and row["test"] == "cluster_sign_flip"


# --- the mean over tasks (summary_score's `mean`) --------------------------------------------------------------


def _two_tasks(var_a, var_b, base_a=None, base_b=None, press="v-cr0.50", seed=0):
    base_a = base_a if base_a is not None else [1] * len(var_a)
    base_b = base_b if base_b is not None else [1] * len(var_b)
    return (rows("no_press", base_a, "a", seed) + rows("no_press", base_b, "b", seed)
            + rows(press, var_a, "a", seed) + rows(press, var_b, "b", seed))


def mean_rows(samples, **kw):
    from kvstudy.significance_mean import mean_significance

    return mean_significance(pd.DataFrame(samples), **kw)


def test_mean_over_tasks_is_an_exact_stratified_sign_flip_test():
    """Two tasks of different sizes: the tested difference is the mean over tasks of each task's mean difference
    (each sample weighs 1 / (tasks x its task's samples)), its p the share of all 2^7 sign patterns of the weighted
    units that reach it, counted here by brute force."""
    var_a, var_b = [0, 0, 1], [0, 1, 0, 1]
    base_b = [1, 1, 1, 0]
    r = mean_rows(_two_tasks(var_a, var_b, base_b=base_b)).iloc[0]
    d = np.array([v - 1 for v in var_a] + [v - b for v, b in zip(var_b, base_b)], float)
    w = np.array([1 / (2 * 3)] * 3 + [1 / (2 * 4)] * 4)
    observed = (w * d).sum()
    null = [abs((w * d * np.array(s)).sum()) for s in itertools.product((-1, 1), repeat=7)]
    assert r["task"] == "mean" and r["test"] == "stratified_sign_flip" and r["n"] == r["n_units"] == 7
    assert r["diff"] == pytest.approx(observed) and r["tested_diff"] == pytest.approx(observed)
    assert r["score"] == pytest.approx((1 / 3 + 2 / 4) / 2) and r["baseline_score"] == pytest.approx((1 + 3 / 4) / 2)
    assert r["p_value"] == pytest.approx(np.mean(np.array(null) >= abs(observed) - 1e-12))
    assert r["family"] == "m/mean"


def test_mean_mark_goes_both_ways_and_holm_corrects_over_the_models_variants():
    worse = _two_tasks([0] * 12 + [1] * 8, [0] * 10 + [1] * 10, press="w-cr0.50")
    better = rows("b-cr0.50", [1] * 20, "a") + rows("b-cr0.50", [1] * 20, "b")
    base_better = [0] * 12 + [1] * 8  # the baseline misses what "b" answers
    samples = (rows("no_press", base_better, "a") + rows("no_press", base_better, "b")
               + rows("w-cr0.50", [0] * 20, "a") + rows("w-cr0.50", [0] * 20, "b") + better)
    out = mean_rows(samples).set_index("press")
    assert out.loc["w-cr0.50", "better"] == "worse" and out.loc["b-cr0.50", "better"] == "better"
    assert (out["p_holm"] >= out["p_value"]).all() and (out["family"] == "m/mean").all()
    assert out["n_units"].eq(40).all() and out["test"].eq("stratified_sign_flip").all()
    assert mean_rows(worse).iloc[0]["diff"] < 0


def test_mean_of_opposite_task_effects_is_not_significant():
    # task a: the variant loses 10 of 10; task b: it gains 10 of 10 -> the mean over tasks does not move
    r = mean_rows(_two_tasks([0] * 10, [1] * 10, base_b=[0] * 10)).iloc[0]
    assert r["diff"] == pytest.approx(0.0) and r["p_value"] == 1.0 and r["better"] == ""


def test_mean_units_are_the_tasks_clusters():
    lost = [1 if i % 10 >= 4 else 0 for i in range(30)]
    depth = [str(i % 10) for i in range(30)]
    samples = (clustered("no_press", [1] * 30, depth, "a") + clustered("v", lost, depth, "a")
               + clustered("no_press", [1] * 30, depth, "b") + clustered("v", lost, depth, "b"))
    r = mean_rows(samples).iloc[0]
    assert r["n"] == 60 and r["n_units"] == 20  # a cluster of task a is not one of task b
    # 8 units differ, all one way: 2 of their 2^8 sign patterns reach it (a unit of 0 flips to itself)
    assert r["p_value"] == pytest.approx(2 / 2**8)


def test_mean_leaves_out_lower_is_better_tasks_and_incomplete_variants():
    samples = _two_tasks([0, 1, 1], [1, 1, 0])
    ppl = [{**r, "higher_is_better": False, "score": 10.0 + i} for i, r in
           enumerate(rows("no_press", [0] * 3, "ppl") + rows("v-cr0.50", [0] * 3, "ppl"))]
    good = [{**r, "higher_is_better": True} for r in samples]
    only_a = [{**r, "higher_is_better": True} for r in rows("x-cr0.50", [1, 1, 1], "a")]  # no samples of b
    out = mean_rows(good + ppl + only_a)
    assert list(out["press"]) == ["v-cr0.50"] and out.iloc[0]["n"] == 6
    assert mean_rows(rows("no_press", [1, 0], "a") + rows("v", [0, 0], "a")).empty  # one task: no mean


def test_write_significance_appends_the_mean_rows(tmp_path):
    pd.DataFrame(_two_tasks([0, 1, 1, 0], [1, 1, 0, 0])).to_csv(tmp_path / "samples.csv", index=False)
    write_significance(tmp_path / "samples.csv", tmp_path / "significance.csv")
    written = pd.read_csv(tmp_path / "significance.csv")
    assert list(written.columns) == COLUMNS and list(written["task"]) == ["a", "b", "mean"]
