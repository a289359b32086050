"""Tests whose unit is a cluster: a sign-flip (randomisation) test on unit sums and a cluster bootstrap.

A unit is what is independent: one sample, or a cluster of samples that share a context (several questions on one
document). Under the null hypothesis that a press changes nothing, the variant's and the baseline's answers are
exchangeable within every pair; swapping them for a whole unit at once flips the sign of its summed difference,
and units are independent, so every pattern of sign flips of the unit sums is equally likely. The p-value is the
share of patterns whose |sum| reaches the observed one: all 2^m patterns of the m units that differ at all where
m <= `EXACT_UNITS` (exact), else `N_PERM` random patterns, counted as (hits + 1) / (N_PERM + 1) (Phipson & Smyth
2010: a Monte Carlo p-value is never 0). With units of one 0/1 pair this is exactly the two-sided exact McNemar
test; its statistic z = sum / sqrt(sum of squares) is the clustered McNemar statistic of Durkalski et al. (2003),
whose exact randomisation distribution this is. Weighted units (the mean over tasks, `kvstudy.significance_mean`) keep it
exact: each unit still flips alone.

Written out rather than `scipy.stats.permutation_test` (which the tests check it against) because scipy tests one
comparison per call: here every comparison with U units shares one sign matrix, as the bootstrap shares its
resamples, which keeps thousands of comparisons within seconds.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EXACT_UNITS = 16  # 2^16 = 65,536 patterns; above, N_PERM random ones
N_PERM = 10_000
_CELLS = 1 << 22  # entries of one (rows x patterns) block, bounding memory


def sign_patterns(n_units: int, n_perm: int = N_PERM, seed: int = 0) -> tuple[np.ndarray, bool]:
    """(patterns x n_units) matrix of +-1 and whether it is every pattern (exact) or a seeded random draw."""
    if n_units <= EXACT_UNITS:
        bits = (np.arange(1 << n_units)[:, None] >> np.arange(n_units)[None, :]) & 1
        return 2.0 * bits - 1.0, True
    return np.random.default_rng([seed, n_units]).choice([-1.0, 1.0], size=(n_perm, n_units)), False


def sign_flip(units: np.ndarray, n_perm: int = N_PERM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided sign-flip test of the sum of each row of `units` (comparisons x U): (z, p) per row.

    A unit whose difference is 0 flips to itself, so only the m non-zero units of a row are flipped: exact where
    m <= EXACT_UNITS (ties are common with 0/1 scores), else N_PERM patterns drawn per m (a row gets the p-value
    it gets alone)."""
    units = np.atleast_2d(np.asarray(units, dtype=float))
    total, squares = units.sum(axis=1), (units**2).sum(axis=1)
    nonzero = units != 0
    m = nonzero.sum(axis=1)
    packed = np.take_along_axis(units, np.argsort(~nonzero, axis=1, kind="stable"), axis=1)  # non-zero first
    p = np.ones(len(units))
    exact = np.flatnonzero((m > 0) & (m <= EXACT_UNITS))
    if len(exact):
        p[exact] = _p_values(packed[exact, : m[exact].max()], *sign_patterns(m[exact].max()))
    for k in np.unique(m[m > EXACT_UNITS]):
        rows = np.flatnonzero(m == k)
        p[rows] = _p_values(packed[rows, :k], *sign_patterns(k, n_perm, seed))
    z = np.divide(total, np.sqrt(squares), out=np.zeros_like(total), where=squares > 0)
    return z, p


def _p_values(units: np.ndarray, signs: np.ndarray, exact: bool) -> np.ndarray:
    """Share of sign patterns whose |sum| reaches each row's observed |sum| (Monte Carlo: (hits + 1) / (B + 1))."""
    # a null sum equal to the observed one up to rounding counts as reaching it
    reach = np.abs(units.sum(axis=1)) - 1e-9 * np.abs(units).sum(axis=1)
    hits = np.empty(len(units))
    step = max(1, _CELLS // len(signs))
    for lo in range(0, len(units), step):
        null = units[lo : lo + step] @ signs.T
        hits[lo : lo + step] = (np.abs(null) >= reach[lo : lo + step, None]).sum(axis=1)
    p = hits / len(signs) if exact else (hits + 1) / (len(signs) + 1)
    return np.minimum(p, 1.0)


def rank_biserial(d: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial r of each row of `d`: (R+ - R-) / (R+ + R-) over the ranks of |d|, zero
    differences split evenly (as Wilcoxon's zsplit); 0 where nothing differs."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    ranks = stats.rankdata(np.abs(d), axis=1)
    half_zero = (ranks * (d == 0)).sum(axis=1) / 2
    r_plus = (ranks * (d > 0)).sum(axis=1) + half_zero
    r_minus = (ranks * (d < 0)).sum(axis=1) + half_zero
    return np.where(d.any(axis=1), (r_plus - r_minus) / (r_plus + r_minus), 0.0)


def resample_counts(n: int, n_boot: int, seed) -> np.ndarray:
    """(n_boot, n) matrix: how often each of the n units is drawn in each resample (seeded, as a loop draws)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def resampled_means(sums: np.ndarray, sizes: np.ndarray | None, n_boot: int, seed) -> np.ndarray:
    """Bootstrap means of each row (comparisons x units): units drawn with replacement, mean = sum of the drawn
    units' sums / their sizes (a cluster bootstrap; with units of one pair, the paired bootstrap). (rows, n_boot)"""
    sums = np.atleast_2d(np.asarray(sums, dtype=float))
    counts = resample_counts(sums.shape[1], n_boot, seed)
    total = sums @ counts.T
    return total / (sums.shape[1] if sizes is None else np.atleast_2d(sizes) @ counts.T)


def percentile_cis(means: np.ndarray, level: float) -> np.ndarray:
    """Percentile CIs from bootstrap means (rows x n_boot): (rows, 2)."""
    tail = (1 - level) / 2 * 100
    return np.percentile(means, [tail, 100 - tail], axis=1).T
