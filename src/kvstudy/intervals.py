"""Medians of repeated timings, their distribution-free intervals, and when one variant is faster than another.

A timing (prefill seconds, TTFT, decode tokens/s, ...) is measured R times (kvstudy.timing). Its reported value is
the median of the R runs; its interval is the order-statistic confidence interval of the median: [x(k), x(R+1-k)]
for the largest k whose coverage 1 - 2 P(Binomial(R, 1/2) < k) is still at least the level (95%). It assumes only
that the runs are independent draws of one distribution (no normality: timings are skewed by the odd slow run).
With R <= 5 no order-statistic interval reaches 95%: the interval is then [min, max] and its real coverage is
recorded (93.75% at R = 5, 96.9% at R = 6); `coverage` always says what the interval is. scipy's
`quantile_test(...).confidence_interval` computes the same interval but gives NaN where 95% is out of reach, so
the rule is written here (tests compare the two where both exist).

**The rule** (docs/statistics.md, "Timings"): A is called faster (or slower) than B only when their intervals do
not overlap; overlapping intervals are "not distinguishable", whatever the medians say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    median: float
    low: float
    high: float
    coverage: float  # the probability the interval covers the true median (>= LEVEL when enough runs)
    n: int


def coverage(n: int, k: int) -> float:
    """Coverage of [x(k), x(n+1-k)] for the median of n independent runs."""
    return float(1 - 2 * binom.cdf(k - 1, n, 0.5))


def median_interval(values, level: float = LEVEL) -> Interval:
    """Median of the finite `values` and its order-statistic interval (module docstring); NaNs for no values."""
    x = np.sort(np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float))
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= level:
        k += 1
    return Interval(float(np.median(x)), float(x[k - 1]), float(x[n - k]), coverage(n, k), n)


def compare(a_low: float, a_high: float, b_low: float, b_high: float) -> int:
    """-1 where A's interval lies wholly below B's, +1 wholly above, 0 where they overlap (or one is missing)."""
    if any(v is None or not math.isfinite(v) for v in (a_low, a_high, b_low, b_high)):
        return 0
    return -1 if a_high < b_low else (1 if a_low > b_high else 0)
