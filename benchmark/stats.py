"""Paired statistics over seeds, the verdict rule and its multiple-comparison correction.

For one cell, ``d_i = sign · (metric(transfer, seed i) − metric(baseline, seed i))`` pairs runs that share the seed,
label subset, split, preprocessing and budget; ``sign`` (``benchmark.metrics``) orients every metric so that
``d > 0`` means transfer did better, on a loss as on an accuracy. ``margin`` ≥ 0 is the smallest difference that
matters in practice, in metric units. Per cell, with mean ``m``, standard error ``se = s/√n`` and Student's t with
``n − 1`` degrees of freedom:

* ``p_positive``: one-sided t-test of H0 ``δ ≤ +margin`` (transfer is not better by more than the margin);
* ``p_negative``: one-sided t-test of H0 ``δ ≥ −margin``;
* the **directional** p-value ``p_direction = min(1, 2·min(p_positive, p_negative))``: both one-sided tests at
  level α/2, which is what a two-sided (1 − α) interval tests (with ``margin = 0`` it is the usual two-sided
  paired t-test);
* the **equivalence** p-value ``p_equivalence = min(1, 2·max(p(δ ≤ −margin), p(δ ≥ +margin)))``: two one-sided tests
  (TOST, Schuirmann 1987), each at level α/2, so that it rejects exactly when the same two-sided (1 − α) interval
  lies inside (−margin, +margin); never rejects when ``margin = 0``.

Across the cells of one family (one report table: every cell of transfer versus its baseline, or every cell of
adaptation versus its reference), Holm's step-down correction (Holm 1979) adjusts the directional p-values, and
separately the equivalence p-values (family-wise error ≤ α for each). Verdicts:

* ``positive`` — Holm-adjusted ``p_direction`` < α and ``m > 0``: transfer is better by more than the margin;
* ``negative`` — Holm-adjusted ``p_direction`` < α and ``m < 0``: worse by more than the margin;
* ``equivalent`` — Holm-adjusted ``p_equivalence`` < α: no practical difference (within ±margin);
* ``inconclusive`` — none of these: too few seeds or too much noise to say;
* ``insufficient seeds`` — fewer than 2 paired seeds (no variance, no test);
* ``budget-limited`` — a run of either side reached its budget's cap still improving (``budget.mode=converged``)
  or its probe's solver did not converge: the delta measures the budget, not the transfer, so the cell gets no
  verdict unless ``verdict.at_cap=true`` asks for the statistics' verdict at the cap.

The interval printed with a verdict is the one the verdict uses: the two-sided t-interval at the level Holm
effectively tested the cell at, ``α_adj = α · p / p_adjusted`` (``adjusted_interval``). Positive ⇔ it lies above
+margin, negative ⇔ below −margin, equivalent ⇔ inside (−margin, +margin) (at the equivalence family's level).

Also per cell: the unadjusted (1 − α) t-interval, the two-sided paired t-test of δ = 0, the Wilcoxon signed-rank
p-value once 6 nonzero deltas exist (fewer cannot reach 0.05), and a percentile bootstrap interval from 10 seeds on
(below that it under-covers: 83.5% for a nominal 95% at n = 5). When every seed gives the same delta (zero variance,
common with accuracies on a small test set) no test exists: p-values are NaN (shown "n/a"), the interval is
``[m, m]``, and the verdict is the limit of the rule as ``se → 0`` (the margin alone decides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import special, stats

POSITIVE, NEGATIVE, EQUIVALENT, INCONCLUSIVE, INSUFFICIENT, BUDGET_LIMITED = (
    "positive", "negative", "equivalent", "inconclusive", "insufficient seeds", "budget-limited",
)  # fmt: skip
VERDICTS = (POSITIVE, NEGATIVE, EQUIVALENT, INCONCLUSIVE, INSUFFICIENT, BUDGET_LIMITED)
"""``budget-limited`` is not a test's outcome: ``benchmark.report.cells.summarize`` gives it to a cell where a run of
either side stopped at its budget's cap (``budget/capped``) instead of the verdict the statistics reached."""
MIN_WILCOXON = 6
MIN_BOOTSTRAP = 10
"""Below 10 seeds the percentile bootstrap of a mean under-covers badly (measured: 83.5% for 95% at n = 5)."""


@dataclass(frozen=True)
class PairedSummary:
    """One cell's statistics. ``p_value`` tests δ = 0 (two-sided); ``p_direction``/``p_equivalence`` test the margin
    (module docstring); ``p_adjusted``/``p_equivalence_adjusted`` are their Holm adjustments once ``adjust`` ran
    (equal to the raw ones before). ``adj_low``/``adj_high``: the interval the verdict used."""

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
    p_direction: float = math.nan
    p_equivalence: float = math.nan
    p_equivalence_adjusted: float = math.nan
    adj_low: float = math.nan
    adj_high: float = math.nan
    zero_variance: bool = False
    alpha: float = math.nan  # the rule's level and margin (``paired_summary`` always sets both)
    margin: float = math.nan


def bootstrap_ci(d: np.ndarray, alpha: float, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``; NaN below ``MIN_BOOTSTRAP`` values (it under-covers)."""
    d = np.asarray(d, dtype=float)
    if len(d) < MIN_BOOTSTRAP:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN with fewer than ``MIN_WILCOXON`` nonzero deltas.

    Zero deltas are dropped before counting (``zero_method="wilcox"`` drops them too), so the threshold is about the
    pairs the test actually ranks.
    """
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    if len(d) < MIN_WILCOXON:
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


def _one_sided(mean: float, se: float, n: int, margin: float) -> tuple[float, float, float, float]:
    """p-values of H0 δ ≤ +margin, H0 δ ≥ −margin, H0 δ ≤ −margin, H0 δ ≥ +margin (in that order); se > 0."""
    df = n - 1  # special.stdtr is Student's t CDF (scipy.stats.t without its per-call overhead)
    return (
        float(special.stdtr(df, -(mean - margin) / se)),
        float(special.stdtr(df, (mean + margin) / se)),
        float(special.stdtr(df, -(mean + margin) / se)),
        float(special.stdtr(df, (mean - margin) / se)),
    )


def _tests(mean: float, se: float, n: int, margin: float) -> tuple[float, float]:
    """(p_direction, p_equivalence) of the module docstring."""
    if se == 0.0:
        p_dir = 0.0 if abs(mean) > margin else 1.0
        p_eq = 0.0 if abs(mean) < margin else 1.0
        return p_dir, p_eq
    p_pos, p_neg, p_above_low, p_below_high = _one_sided(mean, se, n, margin)
    p_dir = min(1.0, 2 * min(p_pos, p_neg))
    p_eq = 1.0 if margin <= 0 else min(1.0, 2 * max(p_above_low, p_below_high))
    return p_dir, p_eq


def t_interval(mean: float, se: float, n: int, alpha: float) -> tuple[float, float]:
    """Two-sided (1 − ``alpha``) Student-t interval; ``[mean, mean]`` at zero variance; NaN below 2 seeds."""
    if n < 2 or math.isnan(se):
        return math.nan, math.nan
    if se == 0.0:
        return mean, mean
    if alpha <= 0:
        return -math.inf, math.inf
    half = float(special.stdtrit(n - 1, 1 - min(alpha, 1.0) / 2)) * se
    return mean - half, mean + half


def adjusted_interval(s: PairedSummary, p: float, p_adjusted: float) -> tuple[float, float]:
    """The t-interval at the level at which Holm tested the cell: ``α · p / p_adjusted``.

    Holm rejects a cell exactly when ``p < α · p/p_adjusted``, so this interval lies beyond ±margin exactly when the
    adjusted p-value is below α: the printed interval and the verdict cannot disagree.
    """
    if s.n < 2 or math.isnan(p_adjusted):
        return math.nan, math.nan
    level = s.alpha if p_adjusted == 0 else s.alpha * p / p_adjusted
    return t_interval(s.mean, s.se, s.n, level)


def paired_summary(
    deltas: Sequence[float] | np.ndarray, alpha: float, margin: float, n_boot: int = 10_000
) -> PairedSummary:
    """Statistics of one cell's oriented paired deltas, with the verdict of a one-cell family (``adjust`` applies
    Holm over the cells of a family). ``alpha`` and ``margin`` are the rule's (``verdict.*``; no default here: the
    one home of the defaults is ``conf/config.yaml``, read by ``benchmark.config_defaults``)."""
    if margin < 0 or not 0 < alpha < 1:
        raise ValueError(f"need margin >= 0 and 0 < alpha < 1, got margin={margin!r}, alpha={alpha!r}")
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else math.nan
        return PairedSummary(n, mean, math.nan, math.nan, math.nan, math.nan, INSUFFICIENT, alpha=alpha, margin=margin)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    zero = se == 0.0
    low, high = t_interval(mean, se, n, alpha)
    p = math.nan if zero else float(2 * special.stdtr(n - 1, -abs(mean) / se))  # paired t-test of delta = 0
    p_dir, p_eq = _tests(mean, se, n, margin)
    boot_low, boot_high = bootstrap_ci(d, alpha, n_boot)
    s = PairedSummary(
        n, mean, se, low, high, p, INCONCLUSIVE, boot_low, boot_high, wilcoxon_p(d), p_dir, p_dir, p_eq, p_eq,
        zero_variance=zero, alpha=alpha, margin=margin,
    )  # fmt: skip
    return _decide(s, p_dir, p_eq)


def _decide(s: PairedSummary, p_dir_adj: float, p_eq_adj: float) -> PairedSummary:
    """The verdict and its interval from the adjusted p-values (module docstring)."""
    if s.n < 2:
        return replace(s, verdict=INSUFFICIENT)
    dir_iv = adjusted_interval(s, s.p_direction, p_dir_adj)
    eq_iv = adjusted_interval(s, s.p_equivalence, p_eq_adj)
    if p_dir_adj < s.alpha:
        v, iv = (POSITIVE if s.mean > 0 else NEGATIVE), dir_iv
    elif p_eq_adj < s.alpha:
        v, iv = EQUIVALENT, eq_iv
    else:  # the directional interval, or the (wider) equivalence one where that fits inside the margins
        v = INCONCLUSIVE
        iv = eq_iv if -s.margin < dir_iv[0] and dir_iv[1] < s.margin else dir_iv
    return replace(s, verdict=v, p_adjusted=p_dir_adj, p_equivalence_adjusted=p_eq_adj, adj_low=iv[0], adj_high=iv[1])


def adjust(summaries: Sequence[PairedSummary]) -> list[PairedSummary]:
    """Holm-adjust the directional and the equivalence p-values across the cells of one family, then decide each
    verdict and its interval with the adjusted values. Cells with fewer than 2 seeds are not in the family."""
    p_dir = holm([s.p_direction for s in summaries])
    p_eq = holm([s.p_equivalence for s in summaries])
    return [_decide(s, a, b) for s, a, b in zip(summaries, p_dir, p_eq, strict=True)]


def family_size(summaries: Sequence[PairedSummary]) -> int:
    """How many cells a Holm family holds (cells with at least 2 paired seeds)."""
    return sum(1 for s in summaries if not math.isnan(s.p_direction))


def power(effect: float, sd: float, n: int, margin: float, alpha: float, family: int = 1) -> float:
    """Probability that the rule calls a true oriented effect ``effect`` > margin positive with ``n`` seeds of
    per-seed standard deviation ``sd``, in a family of ``family`` cells where every other cell is null
    (Bonferroni level ``α/family``: Holm's first step, so a lower bound under Holm).

    Noncentral t: reject when ``(m − margin)/se > t_{1 − α/(2·family), n−1}``.
    """
    if n < 2:
        return 0.0
    crit = float(stats.t.ppf(1 - alpha / (2 * family), n - 1))
    nc = (effect - margin) / (sd / math.sqrt(n))
    return float(stats.nct.sf(crit, n - 1, nc))
