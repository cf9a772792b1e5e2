"""Confidence intervals over seeds, and the rule that decides whether two results can be ranked.

A point's repeats (one value per seed: the data split fixed, the initialisation and batch
order drawn from the seed) are treated as independent draws of a normal variable, and its
mean gets the two-sided Student-t interval mean ± t_{(1+level)/2, n−1} · s/√n, s the sample
standard deviation (ddof 1). The t-interval is used because the repeats are few (3–5): the
normal quantile 1.96 would claim ~2× too narrow an interval at n = 3 (t = 4.30). With one
seed there is no interval (NaN) and nothing is separable.

Two results are **separable** when their intervals do not overlap; otherwise a report says
"not separable" instead of ranking them. Non-overlap of two 95% intervals is a conservative
test (a difference test at roughly the 0.5% level), chosen because it is easy to read off a
plot with error bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

LEVEL = 0.95


def t_interval(values: Iterable[float], level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width) of the Student-t interval at ``level``; half-width NaN for n < 2."""
    from scipy.stats import t

    from ..validation import check_float

    level = check_float("level", level, low=0.0, high=1.0, low_open=True)
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values is empty: the interval needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)


def separable(mean_a: float, half_a: float, mean_b: float, half_b: float) -> bool:
    """Whether the intervals mean ± half do not overlap (never with a NaN half-width)."""
    if math.isnan(half_a) or math.isnan(half_b):
        return False
    return abs(mean_a - mean_b) > half_a + half_b
