"""Paired tests of every press variant against the uncompressed baseline on the same samples, and across seeds.

- 0/1 scores: exact McNemar on the discordant pairs, i.e. a two-sided binomial test of b against b + c at 1/2;
  with p = 1/2 the binomial is symmetric, so p = min(1, 2 * P(X <= min(b, c))) and it is computed for every
  comparison at once with `scipy.stats.binom.cdf` (the same numbers as `statsmodels`' `mcnemar(exact=True)` and
  `scipy.stats.binomtest`, which the tests check).
- continuous scores: `scipy.stats.wilcoxon` (zero differences split, "zsplit").
- every comparison: percentile paired-bootstrap CI of the mean difference, effect size (Cohen's g for McNemar,
  rank-biserial r for Wilcoxon), Holm-Bonferroni (`statsmodels.stats.multitest.multipletests`) within each
  family (model x task).
- where a variant and its baseline both have >= 2 seeds: Welch's t-test (`scipy.stats.ttest_ind`,
  equal_var=False) on the per-seed mean scores, Holm within (model x task) again.

Only the bootstrap is vectorised by hand: resampling indices are drawn once per sample count and applied to
every comparison of that size as a (comparisons x samples) @ (samples x resamples) product, which is what keeps
the analysis of 10,000 jobs within seconds; the numbers are the ones a per-comparison loop with the same seed
gives (see `bootstrap_ci`).

Scores where lower is better (perplexity): the optional `higher_is_better` column (default true) does not
change any test (they are two-sided) but sets `better`: "better", "worse" or "" (not significant).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kvstudy.aggregate import write_csv_atomic

SIGNIFICANCE_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "seed", "baseline", "family",
    "n", "score", "baseline_score", "diff", "test", "statistic", "p_value", "p_holm", "significant",
    "ci_low", "ci_high", "effect_size", "higher_is_better", "better",
]
SEED_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "baseline", "family",
    "n_seeds", "n_seeds_baseline", "score", "baseline_score", "diff", "test", "statistic", "df", "p_value",
    "p_holm", "significant", "higher_is_better", "better",
]
_PAIR = ["model", "task", "length", "seed"]
_VARIANT = [*_PAIR, "press"]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (statsmodels), monotone and capped at 1."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return p
    return multipletests(p, method="holm")[1]


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) matrix: how often each of the n pairs is drawn in each resample (seeded, as a loop draws)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return counts


def bootstrap_cis(diffs: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Percentile CIs of the mean of each row of `diffs` (comparisons x n pairs): (comparisons, 2)."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=float))
    n = diffs.shape[1]
    means = diffs @ _resample_counts(n, n_boot, seed).T / n  # (comparisons, n_boot)
    tail = (1 - level) / 2 * 100
    return np.percentile(means, [tail, 100 - tail], axis=1).T


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
    base = samples.loc[samples["press"] == baseline, [*_PAIR, "sample_id", "score"]]
    variants = samples.loc[samples["press"] != baseline]
    pairs = variants.merge(base, on=[*_PAIR, "sample_id"], suffixes=("", "_baseline"))
    return pairs.dropna(subset=["score", "score_baseline"])


def _holm_by_family(out: pd.DataFrame, alpha: float) -> pd.DataFrame:
    out["p_holm"] = out.groupby("family")["p_value"].transform(lambda p: holm(p.to_numpy())) if len(out) else []
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
                    score=("score", "mean"), baseline_score=("score_baseline", "mean")).reset_index()
    out["baseline"] = baseline
    out["family"] = out["model"].astype(str) + "/" + out["task"].astype(str)
    out["diff"] = out["score"] - out["baseline_score"]
    gid = group.ngroup().to_numpy()
    v, b = pairs["score"].to_numpy(float), pairs["score_baseline"].to_numpy(float)

    binary = pd.Series(np.isin(v, (0, 1)) & np.isin(b, (0, 1))).groupby(gid).all().to_numpy()
    n_up = np.bincount(gid, weights=(v == 1) & (b == 0), minlength=len(out))
    n_down = np.bincount(gid, weights=(v == 0) & (b == 1), minlength=len(out))
    stat, p, effect = _mcnemar_many(n_up, n_down)
    out["test"] = np.where(binary, "mcnemar_exact", "wilcoxon")
    out["statistic"], out["p_value"], out["effect_size"] = stat, p, effect
    starts = np.r_[0, np.cumsum(out["n"].to_numpy())]
    for i in np.flatnonzero(~binary):
        sl = slice(starts[i], starts[i + 1])
        out.loc[i, ["statistic", "p_value", "effect_size"]] = wilcoxon_paired(v[sl], b[sl])

    # bootstrap: every comparison with n pairs shares the seeded resamples of size n (as a loop would)
    ci = np.empty((len(out), 2))
    d = v - b
    for n in np.unique(out["n"]):
        rows = np.flatnonzero(out["n"].to_numpy() == n)
        take = (starts[rows][:, None] + np.arange(n)[None, :])
        ci[rows] = bootstrap_cis(d[take], 1 - alpha, n_boot, seed)
    out["ci_low"], out["ci_high"] = ci[:, 0], ci[:, 1]
    return _holm_by_family(out, alpha)[SIGNIFICANCE_COLUMNS]


def welch(variant: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """Welch's t-test of per-seed scores: (t, Welch-Satterthwaite df, two-sided p); p = 1 when nothing varies."""
    variant, baseline = np.asarray(variant, float), np.asarray(baseline, float)
    if variant.var() == 0 and baseline.var() == 0:
        same = variant.mean() == baseline.mean()
        return 0.0 if same else float("nan"), float("nan"), 1.0 if same else 0.0
    res = stats.ttest_ind(variant, baseline, equal_var=False)
    return float(res.statistic), float(res.df), float(res.pvalue)


def seed_significance(
    samples: pd.DataFrame, baseline: str = "no_press", alpha: float = 0.05
) -> pd.DataFrame:
    """Across seeds: per (model, task, length, press) with >= 2 seeds on both sides, Welch's t-test of the per-seed
    mean scores against the baseline's; Holm within (model x task)."""
    samples = _with_direction(samples)
    keys = ["model", "task", "length", "press"]
    per_seed = (samples.dropna(subset=["score"]).groupby([*keys, "seed"], sort=True)
                .agg(method=("method", "first"), compression_ratio=("compression_ratio", "first"),
                     higher_is_better=("higher_is_better", "first"), score=("score", "mean")).reset_index())
    base = {k: g["score"].to_numpy() for k, g in
            per_seed[per_seed["press"] == baseline].groupby(["model", "task", "length"], sort=False)}
    rows = []
    for key, g in per_seed[per_seed["press"] != baseline].groupby(keys, sort=True):
        ref = base.get(key[:3])
        if ref is None or len(ref) < 2 or len(g) < 2:
            continue
        t, df, p = welch(g["score"].to_numpy(), ref)
        rows.append({**dict(zip(keys, key)), "method": g["method"].iloc[0],
                     "compression_ratio": g["compression_ratio"].iloc[0], "baseline": baseline,
                     "family": f"{key[0]}/{key[1]}", "n_seeds": len(g), "n_seeds_baseline": len(ref),
                     "score": g["score"].mean(), "baseline_score": ref.mean(),
                     "diff": g["score"].mean() - ref.mean(), "test": "welch_t", "statistic": t, "df": df,
                     "p_value": p, "higher_is_better": bool(g["higher_is_better"].iloc[0])})
    out = pd.DataFrame(rows, columns=SEED_COLUMNS)
    if out.empty:
        return out
    return _holm_by_family(out, alpha)[SEED_COLUMNS]


_USECOLS = ["model", "task", "length", "press", "method", "compression_ratio", "seed", "sample_id", "score",
            "higher_is_better"]


def read_samples(samples_csv: Path) -> pd.DataFrame:
    """samples.csv with ids and names as strings (so "01" and "1" never merge); extra columns ignored."""
    return pd.read_csv(samples_csv, dtype={c: str for c in ("model", "task", "press", "method", "sample_id")},
                       usecols=lambda c: c in _USECOLS)


def write_significance(samples_csv: Path, out_csv: Path, baseline: str = "no_press",
                       seeds_csv: Path | None = None) -> None:
    """samples.csv -> significance.csv (paired, per seed) and, if asked, the across-seed Welch table."""
    samples = read_samples(samples_csv)
    write_csv_atomic(significance(samples, baseline), out_csv)
    if seeds_csv is not None:
        write_csv_atomic(seed_significance(samples, baseline), seeds_csv)
