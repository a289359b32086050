"""Paired tests of every press variant against the uncompressed baseline on the same samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from kvstudy.aggregate import write_csv_atomic

SIGNIFICANCE_COLUMNS = [
    "model", "task", "length", "press", "method", "compression_ratio", "seed", "baseline", "family",
    "n", "score", "baseline_score", "diff", "test", "statistic", "p_value", "p_holm", "significant",
    "ci_low", "ci_high", "effect_size",
]
_PAIR = ["model", "task", "length", "seed"]
_VARIANT = [*_PAIR, "press"]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, monotone and capped at 1.

    Hand-written: scipy has no Holm (stats.false_discovery_control is BH/BY only) and statsmodels
    is not in our pins; it is five lines of numpy.
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def bootstrap_ci(diffs: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean paired difference; resampling pairs keeps the pairing."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_exact(variant: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """Exact McNemar on discordant pairs: (min(b, c), two-sided p, Cohen's g = b/(b+c) - 0.5).

    b counts pairs only the variant got right, c pairs only the baseline got right.
    """
    b = int(((variant == 1) & (baseline == 0)).sum())
    c = int(((variant == 0) & (baseline == 1)).sum())
    if b + c == 0:
        return float(min(b, c)), 1.0, 0.0
    p = stats.binomtest(b, b + c, 0.5).pvalue
    return float(min(b, c)), float(p), b / (b + c) - 0.5


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


def _compare(variant: np.ndarray, baseline: np.ndarray, level: float, n_boot: int, seed: int) -> dict:
    """All measures for one paired comparison."""
    binary = np.isin(variant, (0, 1)).all() and np.isin(baseline, (0, 1)).all()
    test = "mcnemar_exact" if binary else "wilcoxon"
    statistic, p, effect = (mcnemar_exact if binary else wilcoxon_paired)(variant, baseline)
    low, high = bootstrap_ci(variant - baseline, level, n_boot, seed)
    return {
        "n": len(variant), "score": variant.mean(), "baseline_score": baseline.mean(),
        "diff": variant.mean() - baseline.mean(), "test": test, "statistic": statistic, "p_value": p,
        "ci_low": low, "ci_high": high, "effect_size": effect,
    }


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


def significance(
    samples: pd.DataFrame, baseline: str = "no_press", alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per variant x (model, task, length, seed) with a baseline; Holm per (model, task).

    The bootstrap CI has level 1 - alpha (95% by default) so it agrees with the test's threshold.
    """
    rows = []
    for key, group in _pairs(samples, baseline).groupby(_VARIANT, sort=True):
        row = dict(zip(_VARIANT, key))
        row.update(method=group["method"].iloc[0], compression_ratio=group["compression_ratio"].iloc[0],
                   baseline=baseline, family=f"{row['model']}/{row['task']}")
        row.update(_compare(group["score"].to_numpy(float), group["score_baseline"].to_numpy(float),
                            1 - alpha, n_boot, seed))
        rows.append(row)
    out = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)
    out["p_holm"] = out.groupby("family")["p_value"].transform(lambda p: holm(p.to_numpy()))
    out["significant"] = out["p_holm"] < alpha
    return out


def write_significance(samples_csv: Path, out_csv: Path, baseline: str = "no_press") -> None:
    """samples.csv -> significance.csv; sample ids stay strings so "01" and "1" never merge."""
    samples = pd.read_csv(samples_csv, dtype={c: str for c in ("model", "task", "press", "method", "sample_id")},
                          usecols=["model", "task", "length", "press", "method", "compression_ratio", "seed",
                                   "sample_id", "score"])
    write_csv_atomic(significance(samples, baseline), out_csv)
