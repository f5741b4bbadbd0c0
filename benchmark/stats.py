"""Paired statistics over seeds, multiple-comparison correction and the verdict rule.

For one cell (source, target, strategy, label budget), ``d_i = metric(transfer, seed i) − metric(scratch, seed i)``
pairs runs that share the seed, label subset, split, preprocessing and budget. Per cell:

* mean and standard error ``s/√n`` of ``d``;
* a two-sided Student-t confidence interval ``mean ± t_{1−α/2, n−1} · s/√n``;
* a percentile bootstrap interval of the mean (resampling seeds with replacement; seeded, so reports are stable);
* a paired t-test p-value (H0: mean delta = 0), and the Wilcoxon signed-rank p-value once ``n ≥ 6``
  (with fewer pairs its smallest attainable two-sided p-value exceeds 0.05, so it could never reject);
* across the cells of one report, Holm-Bonferroni adjusted t-test p-values (family-wise error ≤ α).

Verdict (``margin`` ≥ 0 is the smallest difference that matters in practice, in metric units):

* ``positive`` — Holm-adjusted p < α, the whole t-interval lies above 0 and the mean delta exceeds ``+margin``;
* ``negative`` — Holm-adjusted p < α, the whole t-interval lies below 0 and the mean is below ``−margin``;
* ``inconclusive`` — otherwise;
* ``insufficient seeds`` — fewer than 2 paired seeds (no variance estimate, no interval).

When every seed gives the same nonzero delta (zero variance, common with accuracies on a small test set) the
interval has zero width and p is 0: the margin alone then decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

POSITIVE, NEGATIVE, INCONCLUSIVE, INSUFFICIENT = "positive", "negative", "inconclusive", "insufficient seeds"
MIN_WILCOXON = 6


@dataclass(frozen=True)
class PairedSummary:
    n: int
    mean: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str
    boot_low: float = math.nan
    boot_high: float = math.nan
    p_wilcoxon: float = math.nan
    p_adjusted: float = math.nan


def bootstrap_ci(d: np.ndarray, alpha: float = 0.05, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` (NaN below 2 values)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN below ``MIN_WILCOXON`` pairs or when every delta is 0."""
    d = np.asarray(d, dtype=float)
    if len(d) < MIN_WILCOXON or not np.any(d != 0):
        return math.nan
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN, unranked."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def paired_summary(
    deltas: Sequence[float] | np.ndarray, alpha: float = 0.05, margin: float = 0.0, n_boot: int = 10_000
) -> PairedSummary:
    """Statistics of one cell's paired deltas, with an unadjusted verdict (``adjust`` applies Holm over cells)."""
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return PairedSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan, INSUFFICIENT)
    mean = float(d.mean())
    if n < 2:
        return PairedSummary(n, mean, math.nan, math.nan, math.nan, math.nan, INSUFFICIENT)
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        low = high = mean
    else:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
        low, high = mean - half, mean + half
        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    boot_low, boot_high = bootstrap_ci(d, alpha, n_boot)
    return PairedSummary(
        n, mean, se, low, high, p, verdict(mean, low, high, margin, p, alpha), boot_low, boot_high, wilcoxon_p(d), p
    )


def adjust(summaries: Sequence[PairedSummary], alpha: float = 0.05, margin: float = 0.0) -> list[PairedSummary]:
    """Holm-adjust the t-test p-values across cells and recompute each verdict with the adjusted p."""
    adjusted = holm([s.p_value for s in summaries])
    return [
        replace(s, p_adjusted=pa, verdict=verdict(s.mean, s.ci_low, s.ci_high, margin, pa, alpha))
        for s, pa in zip(summaries, adjusted, strict=True)
    ]


def verdict(
    mean: float, ci_low: float, ci_high: float, margin: float = 0.0, p: float = math.nan, alpha: float = 0.05
) -> str:
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INSUFFICIENT
    significant = not math.isnan(p) and p < alpha
    if significant and ci_low > 0 and mean > margin:
        return POSITIVE
    if significant and ci_high < 0 and mean < -margin:
        return NEGATIVE
    return INCONCLUSIVE
