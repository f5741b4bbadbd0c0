"""Paired statistics over seeds and the verdict rule.

For one cell (source, target, strategy, label budget), ``d_i = metric(transfer, seed i) − metric(scratch, seed i)``
pairs runs that share the seed, label subset, split, preprocessing and budget. The mean of ``d`` gets a two-sided
Student-t confidence interval ``mean ± t_{1-α/2, n-1} · s/√n`` and a paired t-test p-value (H0: mean delta = 0).

Verdict (``margin`` ≥ 0 is the smallest difference that matters in practice, in metric units):

* ``positive``  — the whole interval lies above 0 and the mean delta exceeds ``+margin``;
* ``negative``  — the whole interval lies below 0 and the mean delta is below ``−margin`` (negative transfer);
* ``inconclusive`` — otherwise;
* ``insufficient seeds`` — fewer than 2 paired seeds (no variance estimate, no interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

POSITIVE, NEGATIVE, INCONCLUSIVE, INSUFFICIENT = "positive", "negative", "inconclusive", "insufficient seeds"


@dataclass(frozen=True)
class PairedSummary:
    n: int
    mean: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


def paired_summary(deltas: list[float] | np.ndarray, alpha: float = 0.05, margin: float = 0.0) -> PairedSummary:
    """Mean, standard error, t-interval at level 1−α, t-test p-value and verdict for paired differences."""
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return PairedSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan, INSUFFICIENT)
    mean = float(d.mean())
    if n < 2:
        return PairedSummary(n, mean, math.nan, math.nan, math.nan, math.nan, INSUFFICIENT)
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0.0:  # identical deltas on every seed: no sampling variation to test against
        p = 1.0 if mean == 0.0 else 0.0
        low = high = mean
    else:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
        low, high = mean - half, mean + half
        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedSummary(n, mean, se, low, high, p, verdict(mean, low, high, margin))


def verdict(mean: float, ci_low: float, ci_high: float, margin: float = 0.0) -> str:
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INSUFFICIENT
    if ci_low > 0 and mean > margin:
        return POSITIVE
    if ci_high < 0 and mean < -margin:
        return NEGATIVE
    return INCONCLUSIVE
