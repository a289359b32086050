"""Paired tests of every press variant against the uncompressed baseline on the same samples, and across seeds.

The unit of a test is an independent sample. Samples that share structure carry one cluster id (samples.csv
`cluster`: several questions on one document share it; a sample alone is its own cluster, the default where the
column is missing or empty), and the test counts clusters, not samples (`n_units`):
- every cluster one sample, 0/1 scores: exact McNemar on the discordant pairs, i.e. a two-sided binomial test of b
  against b + c at 1/2; with p = 1/2 the binomial is symmetric, so p = min(1, 2 * P(X <= min(b, c))), computed
  for every comparison at once with `scipy.stats.binom.cdf` (the same numbers as `statsmodels`' `mcnemar(exact=
  True)` and `scipy.stats.binomtest`, which the tests check).
- every cluster one sample, continuous scores: `scipy.stats.wilcoxon` (zero differences split, "zsplit").
- clusters of several samples: the cluster sign-flip test of `kvstudy.sign_flip` on the clusters' summed paired
  differences (`cluster_sign_flip`; statistic: the clustered McNemar z of Durkalski et al. 2003; effect size:
  rank-biserial r of the cluster sums). It is what McNemar is with clusters of one, and it never lets a cluster
  of correlated answers count as several units. docs/statistics.md says why this test.
- every comparison: percentile bootstrap CI of the mean paired difference, resampling units (a paired bootstrap, or
  a cluster bootstrap: mean = resampled sums / resampled sizes); effect size (Cohen's g for McNemar, rank-biserial
  r otherwise); Holm-Bonferroni (`statsmodels.stats.multitest.multipletests`) within each family (model x task).
- where a variant and its baseline both have >= 2 seeds: Welch's t-test (`scipy.stats.ttest_ind`,
  equal_var=False) on the per-seed mean scores, Holm within (model x task) again.
- the mean over tasks (summary_score's `mean`): `kvstudy.significance_mean`, rows with task "mean" in
  significance.csv (both written by `kvstudy.significance_write`).

Only the bootstrap and the sign-flip test are vectorised by hand: resampling indices (sign patterns) are drawn once
per unit count and applied to every comparison of that size as a (comparisons x units) @ (units x resamples)
product, which is what keeps the analysis of 10,000 jobs within seconds; the numbers are the ones a per-comparison
loop with the same seed gives (see `bootstrap_ci`).

Scores where lower is better (perplexity): the optional `higher_is_better` column (default true) does not
change any test (they are two-sided) but sets `better`: "better", "worse" or "" (not significant).

Perplexity (samples with a per-sample `nll`, mean NLL per scored token) has one aggregation everywhere: `score`
and `baseline_score` are corpus perplexities exp(sum of NLL / scored tokens) of the paired samples, as
results.csv and every table and figure show them; the paired test, bootstrap CI and effect size are on the
per-sample NLL (`tested_on = "nll"`, `tested_diff` = mean paired NLL difference, nats per token), never on a mean
of per-sample perplexities. Across seeds the Welch test is on the per-seed corpus NLL and the scores are means of
the per-seed corpus perplexities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kvstudy.sign_flip import percentile_cis, rank_biserial, resampled_means, sign_flip

SIGNIFICANCE_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "seed", "baseline", "family",
    "n", "n_units", "score", "baseline_score", "diff", "test", "statistic", "p_value", "p_holm", "significant",
    "ci_low", "ci_high", "effect_size", "higher_is_better", "better", "tested_on", "tested_diff",
]
SEED_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "baseline", "family",
    "n_seeds", "n_seeds_baseline", "score", "baseline_score", "diff", "test", "statistic", "df", "p_value",
    "p_holm", "significant", "higher_is_better", "better", "tested_on", "tested_diff",
]
_PAIR = ["model", "task", "length", "seed"]
_VARIANT = [*_PAIR, "press"]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family (statsmodels' multipletests), monotone and capped at 1."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return p
    return multipletests(p, method="holm")[1]


def holm_by_family(p_values: np.ndarray, families: np.ndarray) -> np.ndarray:
    """Holm within each family, every family in one vectorised pass.

    Written out because `multipletests` runs `gc.collect()` on every call: with a few hundred (model x task)
    families and hundreds of thousands of samples in memory that alone took longer than the whole analysis. The
    tests check it against `multipletests` family by family.
    """
    p = np.asarray(p_values, dtype=float)
    codes = pd.factorize(np.asarray(families))[0]
    order = np.lexsort((p, codes))
    fam = codes[order]
    size = np.bincount(codes)[fam]
    first = np.r_[0, np.flatnonzero(np.diff(fam)) + 1]
    rank = np.arange(len(p)) - np.repeat(first, np.diff(np.r_[first, len(p)]))
    stepped = pd.Series((size - rank) * p[order]).groupby(fam).cummax().to_numpy()
    adjusted = np.empty(len(p))
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def bootstrap_cis(diffs: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                  sizes: np.ndarray | None = None) -> np.ndarray:
    """Percentile CIs of the mean of each row of `diffs` (comparisons x units): (comparisons, 2). A row holds
    paired differences, or with `sizes` (same shape) each cluster's summed differences and its sample count."""
    return percentile_cis(resampled_means(diffs, sizes, n_boot, seed), level)


def bootstrap_ci(diffs: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean paired difference; resampling pairs keeps the pairing."""
    low, high = bootstrap_cis(np.asarray(diffs, dtype=float)[None, :], level, n_boot, seed)[0]
    return float(low), float(high)


def mcnemar_exact(variant: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """Exact McNemar on discordant pairs: (min(b, c), two-sided p, Cohen's g = b/(b+c) - 0.5).

    b counts pairs only the variant got right, c pairs only the baseline got right.
    """
    b = int(((variant == 1) & (baseline == 0)).sum())
    c = int(((variant == 0) & (baseline == 1)).sum())
    stat, p, g = _mcnemar_many(np.array([b]), np.array([c]))
    return float(stat[0]), float(p[0]), float(g[0])


def _mcnemar_many(b: np.ndarray, c: np.ndarray):
    """Vectorised exact McNemar: statistic min(b, c), p, Cohen's g (0 where there is no discordant pair)."""
    b, c = np.asarray(b, float), np.asarray(c, float)
    k, m = np.minimum(b, c), b + c
    p = np.where(m > 0, np.minimum(1.0, 2 * stats.binom.cdf(k, np.maximum(m, 1), 0.5)), 1.0)
    g = np.divide(b, m, out=np.full_like(m, 0.5), where=m > 0) - 0.5
    return k, p, g


def wilcoxon_paired(variant: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """Wilcoxon signed-rank (zeros split, as scipy's zsplit): (statistic, p, rank-biserial r).

    r = (R+ - R-) / (R+ + R-) over ranks of |d|, zero differences split evenly, so it is
    positive when the variant scores higher and 0 when nothing differs.
    """
    d = variant - baseline
    ranks = stats.rankdata(np.abs(d))
    r_plus = ranks[d > 0].sum() + ranks[d == 0].sum() / 2
    r_minus = ranks[d < 0].sum() + ranks[d == 0].sum() / 2
    effect = float((r_plus - r_minus) / (r_plus + r_minus))
    if not np.any(d):
        return float(min(r_plus, r_minus)), 1.0, 0.0
    res = stats.wilcoxon(variant, baseline, zero_method="zsplit")
    return float(res.statistic), float(res.pvalue), effect


def _wilcoxon_many(v: np.ndarray, b: np.ndarray):
    """`wilcoxon_paired` for every row of (comparisons x n) matrices at once, with the p-values one call per row
    gives: scipy picks exact / permutation / normal from ties and zeros of the *whole* batch, so rows are batched
    by that choice (no ties or zeros: method "auto"; ties or zeros with n > 13: "asymptotic", as auto picks for
    one row) and the rare small rows with ties (permutation test) run one by one."""
    d = v - b
    n = d.shape[1]
    ranks = stats.rankdata(np.abs(d), axis=1)
    half_zero = (ranks * (d == 0)).sum(axis=1) / 2
    r_plus, r_minus = (ranks * (d > 0)).sum(axis=1) + half_zero, (ranks * (d < 0)).sum(axis=1) + half_zero
    effect = (r_plus - r_minus) / (r_plus + r_minus)
    stat, p = np.minimum(r_plus, r_minus), np.ones(len(d))
    absd = np.sort(np.abs(d), axis=1)
    tied = (d == 0).any(axis=1) | (np.diff(absd, axis=1) == 0).any(axis=1)
    varies = d.any(axis=1)
    for rows, method in ((varies & ~tied, "auto"), (varies & tied, "asymptotic" if n > 13 else None)):
        idx = np.flatnonzero(rows)
        if not len(idx):
            continue
        if method is None:
            for i in idx:
                stat[i], p[i], effect[i] = wilcoxon_paired(v[i], b[i])
            continue
        res = stats.wilcoxon(v[idx], b[idx], zero_method="zsplit", method=method, axis=1)
        stat[idx], p[idx] = res.statistic, res.pvalue
    effect[~varies] = 0.0
    return stat, p, effect


def _direction(table: pd.DataFrame) -> pd.Series:
    """"better" / "worse" / "" per row, from the sign of diff, higher_is_better and significance."""
    up = np.where(table["higher_is_better"].astype(bool), 1.0, -1.0) * table["diff"].astype(float)
    sig = table["significant"].astype(bool)
    return pd.Series(np.where(sig & (up > 0), "better", np.where(sig & (up < 0), "worse", "")), index=table.index)


def _with_direction(samples: pd.DataFrame) -> pd.DataFrame:
    if "higher_is_better" not in samples.columns:
        return samples.assign(higher_is_better=True)
    hib = samples["higher_is_better"]
    text = hib.astype(str).str.strip().str.lower()
    return samples.assign(higher_is_better=~text.isin(["false", "0", "0.0", "no"]))


def _pairs(samples: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Variant samples joined to baseline samples on (model, task, length, seed, sample_id)."""
    keys = [*_VARIANT, "sample_id"]
    duplicated = samples.duplicated(keys)
    if duplicated.any():
        raise ValueError(f"duplicate samples, e.g. {samples.loc[duplicated, keys].iloc[0].to_dict()}")
    samples = _with_cluster(_with_nll(samples))
    base = samples.loc[samples["press"] == baseline, [*_PAIR, "sample_id", "score", *_NLL]]
    variants = samples.loc[samples["press"] != baseline]
    pairs = variants.merge(base, on=[*_PAIR, "sample_id"], suffixes=("", "_baseline"))
    pairs = pairs.dropna(subset=["score", "score_baseline"])
    # the tested value: the per-sample NLL where both sides have one (perplexity), else the score
    nll = pairs["nll"].notna() & pairs["nll_baseline"].notna()
    return pairs.assign(_nll=nll, value=pairs["nll"].where(nll, pairs["score"]),
                        value_baseline=pairs["nll_baseline"].where(nll, pairs["score_baseline"]))


_NLL = ["nll", "nll_sum", "scored_tokens"]


def _with_cluster(samples: pd.DataFrame) -> pd.DataFrame:
    """samples with `cluster` as strings; a sample without one (no column, or empty) is its own cluster."""
    own = samples["sample_id"].astype(str)
    if "cluster" not in samples.columns:
        return samples.assign(cluster=own)
    given = samples["cluster"]
    return samples.assign(cluster=given.astype(str).where(given.notna() & (given.astype(str) != ""), own))


def _with_nll(samples: pd.DataFrame) -> pd.DataFrame:
    """samples with the perplexity columns (empty where samples.csv has none)."""
    missing = {c: np.nan for c in _NLL if c not in samples.columns}
    return samples.assign(**missing) if missing else samples


def _corpus_ppl(nll_sum: pd.Series, tokens: pd.Series, keys) -> pd.Series:
    """exp(sum of NLL / scored tokens) per group: the corpus perplexity of those samples."""
    return np.exp(nll_sum.groupby(keys).sum() / tokens.groupby(keys).sum())


def _holm_by_family(out: pd.DataFrame, alpha: float) -> pd.DataFrame:
    out["p_holm"] = holm_by_family(out["p_value"].to_numpy(float), out["family"].to_numpy()) if len(out) else []
    out["significant"] = out["p_holm"] < alpha
    out["better"] = _direction(out) if len(out) else []
    return out


def significance(
    samples: pd.DataFrame, baseline: str = "no_press", alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per variant x (model, task, length, seed) with a baseline; Holm per (model, task).

    The bootstrap CI has level 1 - alpha (95% by default) so it agrees with the test's threshold.
    """
    pairs = _pairs(_with_direction(samples), baseline)
    if pairs.empty:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    pairs = pairs.sort_values(_VARIANT, kind="mergesort").reset_index(drop=True)
    group = pairs.groupby(_VARIANT, sort=False)
    out = group.agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
                    higher_is_better=("higher_is_better", "first"), n=("score", "size"),
                    score=("score", "mean"), baseline_score=("score_baseline", "mean"),
                    nll=("_nll", "all"), tested_diff=("value", "mean"), _b=("value_baseline", "mean")).reset_index()
    gid = group.ngroup().to_numpy()
    out = _corpus_scores(out, pairs, gid)
    out["baseline"] = baseline
    out["family"] = out["model"].astype(str) + "/" + out["task"].astype(str)
    out["diff"] = out["score"] - out["baseline_score"]
    out["tested_diff"] = out["tested_diff"] - out.pop("_b")
    units = Units.of(pairs, gid, len(out))
    out["n_units"] = units.count
    _pair_tests(out, pairs, gid)
    _unit_tests(out, units, alpha, n_boot, seed)
    return _holm_by_family(out, alpha)[SIGNIFICANCE_COLUMNS]


@dataclass
class Units:
    """The independent units of every comparison: its clusters (in order of first appearance, so units of one pair
    keep the pairs' order), each with its summed paired difference of the tested value and its sample count."""

    sums: np.ndarray
    sizes: np.ndarray
    count: np.ndarray  # units per comparison
    starts: np.ndarray  # index of each comparison's first unit

    @classmethod
    def of(cls, pairs: pd.DataFrame, gid: np.ndarray, n_comparisons: int) -> "Units":
        d = pairs["value"].to_numpy(float) - pairs["value_baseline"].to_numpy(float)
        uid = pairs.groupby([pd.Series(gid, index=pairs.index), pairs["cluster"]], sort=False).ngroup().to_numpy()
        owner = np.zeros(uid.max() + 1, dtype=int)
        owner[uid] = gid
        count = np.bincount(owner, minlength=n_comparisons)
        return cls(np.bincount(uid, weights=d), np.bincount(uid).astype(float), count,
                   np.r_[0, np.cumsum(count)][:-1])

    def matrix(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sums, sizes) of comparisons `rows`, which all have k units, as (rows x k) matrices."""
        take = self.starts[rows][:, None] + np.arange(k)[None, :]
        return self.sums[take], self.sizes[take]


def _pair_tests(out: pd.DataFrame, pairs: pd.DataFrame, gid: np.ndarray) -> None:
    """test, statistic, p_value, effect_size of comparisons whose units are single pairs: exact McNemar (0/1
    scores) or Wilcoxon (continuous); clustered comparisons are `cluster_sign_flip` (set in `_unit_tests`)."""
    v, b = pairs["value"].to_numpy(float), pairs["value_baseline"].to_numpy(float)
    binary = pd.Series(np.isin(v, (0, 1)) & np.isin(b, (0, 1))).groupby(gid).all().to_numpy()
    binary &= out["tested_on"].to_numpy() == "score"  # NLL is continuous even where it happens to be 0 or 1
    clustered = out["n_units"].to_numpy() < out["n"].to_numpy()
    n_up = np.bincount(gid, weights=(v == 1) & (b == 0), minlength=len(out))
    n_down = np.bincount(gid, weights=(v == 0) & (b == 1), minlength=len(out))
    stat, p, effect = _mcnemar_many(n_up, n_down)
    out["test"] = np.where(clustered, "cluster_sign_flip", np.where(binary, "mcnemar_exact", "wilcoxon"))
    # Wilcoxon for every comparison with n pairs at once: rows of an (comparisons x n) matrix
    starts = np.r_[0, np.cumsum(out["n"].to_numpy())][:-1]
    wilcoxon = ~binary & ~clustered
    for n in np.unique(out.loc[wilcoxon, "n"]):
        rows = np.flatnonzero(wilcoxon & (out["n"].to_numpy() == n))
        take = starts[rows][:, None] + np.arange(n)[None, :]
        stat[rows], p[rows], effect[rows] = _wilcoxon_many(v[take], b[take])
    out["statistic"], out["p_value"], out["effect_size"] = stat, p, effect


def _unit_tests(out: pd.DataFrame, units: Units, alpha: float, n_boot: int, seed: int) -> None:
    """Bootstrap CI over units for every comparison (the seeded resamples of k units shared by all comparisons with
    k units, as a loop with the same seed would draw them), and the sign-flip test of the clustered ones."""
    ci = np.empty((len(out), 2))
    stat, p, effect = (out[c].to_numpy(float).copy() for c in ("statistic", "p_value", "effect_size"))
    clustered = out["test"].to_numpy() == "cluster_sign_flip"
    for k in np.unique(units.count):
        rows = np.flatnonzero(units.count == k)
        sums, sizes = units.matrix(rows, k)
        ci[rows] = bootstrap_cis(sums, 1 - alpha, n_boot, seed, sizes=sizes)
        mine = clustered[rows]
        if mine.any():
            stat[rows[mine]], p[rows[mine]] = sign_flip(sums[mine], seed=seed)
            effect[rows[mine]] = rank_biserial(sums[mine])
    out["statistic"], out["p_value"], out["effect_size"] = stat, p, effect
    out["ci_low"], out["ci_high"] = ci[:, 0], ci[:, 1]


def _corpus_scores(out: pd.DataFrame, pairs: pd.DataFrame, gid: np.ndarray) -> pd.DataFrame:
    """Comparisons on NLL get corpus perplexities of their paired samples as score and baseline_score."""
    nll = out["nll"].to_numpy()
    out["tested_on"] = np.where(nll, "nll", "score")
    if nll.any():
        variant = _corpus_ppl(pairs["nll_sum"], pairs["scored_tokens"], gid).to_numpy()
        base = _corpus_ppl(pairs["nll_sum_baseline"], pairs["scored_tokens_baseline"], gid).to_numpy()
        out.loc[nll, "score"], out.loc[nll, "baseline_score"] = variant[nll], base[nll]
    return out.drop(columns="nll")


def _welch_many(m1, s1, n1, m2, s2, n2):
    """Vectorised Welch t-test from per-side means, sample s.d. and counts (`scipy.stats.ttest_ind_from_stats`,
    equal_var=False); scipy does not return the Welch-Satterthwaite df, so it is computed here. Where neither
    side varies: t = 0, p = 1 for equal means; t = nan, p = 0 for different ones (a certain difference)."""
    v1, v2 = s1**2 / n1, s2**2 / n2
    flat = (v1 + v2) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        res = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    t, p = np.asarray(res.statistic, float), np.asarray(res.pvalue, float)
    same = m1 == m2
    t = np.where(flat, np.where(same, 0.0, np.nan), t)
    p = np.where(flat, np.where(same, 1.0, 0.0), p)
    return t, np.where(flat, np.nan, df), p


def _per_seed(samples: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per (keys, seed): `score` (mean score, or the corpus perplexity where every sample has an NLL) and the
    tested `value` (the mean score, or the corpus NLL)."""
    samples = _with_nll(samples.dropna(subset=["score"]))
    samples = samples.assign(_nll=samples["nll"].notna())
    per = (samples.groupby([*keys, "seed"], sort=True)
           .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
                higher_is_better=("higher_is_better", "first"), score=("score", "mean"), nll=("_nll", "all"),
                nll_sum=("nll_sum", "sum"), tokens=("scored_tokens", "sum")).reset_index())
    corpus_nll = per["nll_sum"] / per["tokens"]
    nll = per.pop("nll").to_numpy()
    per["score"] = np.where(nll, np.exp(corpus_nll), per["score"])
    per["value"] = np.where(nll, corpus_nll, per["score"])
    per["tested_on"] = np.where(nll, "nll", "score")
    return per.drop(columns=["nll_sum", "tokens"])


def seed_significance(
    samples: pd.DataFrame, baseline: str = "no_press", alpha: float = 0.05
) -> pd.DataFrame:
    """Across seeds: per (model, task, length, press) with >= 2 seeds on both sides, Welch's t-test of the per-seed
    tested values (mean score, or corpus NLL for perplexity) against the baseline's; Holm within (model x task)."""
    samples = _with_direction(samples)
    cell = ["model", "task", "length"]
    keys = [*cell, "press"]
    per_seed = _per_seed(samples, keys)
    per = (per_seed.groupby(keys, sort=True)
           .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
                higher_is_better=("higher_is_better", "first"), tested_on=("tested_on", "first"),
                n_seeds=("score", "size"), score=("score", "mean"), value=("value", "mean"),
                sd=("value", "std")).reset_index())
    base = per.loc[per["press"] == baseline, [*cell, "n_seeds", "score", "value", "sd"]]
    out = per[per["press"] != baseline].merge(base, on=cell, suffixes=("", "_baseline"))
    out = out[(out["n_seeds"] >= 2) & (out["n_seeds_baseline"] >= 2)].reset_index(drop=True)
    if out.empty:
        return pd.DataFrame(columns=SEED_COLUMNS)
    t, df, p = _welch_many(*(out[c].to_numpy(float) for c in
                             ("value", "sd", "n_seeds", "value_baseline", "sd_baseline", "n_seeds_baseline")))
    out = out.rename(columns={"score_baseline": "baseline_score"}).assign(
        baseline=baseline, family=out["model"].astype(str) + "/" + out["task"].astype(str),
        diff=out["score"] - out["score_baseline"], tested_diff=out["value"] - out["value_baseline"],
        test="welch_t", statistic=t, df=df, p_value=p, higher_is_better=out["higher_is_better"].astype(bool))
    return _holm_by_family(out, alpha)[SEED_COLUMNS]


_USECOLS = ["model", "task", "length", "press", "method", "compression_ratio", "seed", "sample_id", "score",
            "higher_is_better", "cluster", *_NLL]


def read_samples(samples_csv: Path) -> pd.DataFrame:
    """samples.csv with ids and names as strings (so "01" and "1" never merge); extra columns ignored."""
    ids = ("model", "task", "press", "method", "sample_id", "cluster")
    return pd.read_csv(samples_csv, dtype={c: str for c in ids}, usecols=lambda c: c in _USECOLS)
