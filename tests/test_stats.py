"""The paired statistics and the verdict rule, checked against scipy on hand-built inputs and by simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.stats import (
    EQUIVALENT,
    INCONCLUSIVE,
    INSUFFICIENT,
    NEGATIVE,
    POSITIVE,
    adjust,
    bootstrap_ci,
    holm,
    paired_summary,
    power,
    wilcoxon_p,
)

ALPHA = 0.05


def summary(deltas, margin: float = 0.0, alpha: float = ALPHA, **kwargs):
    """``paired_summary`` under the rule these tests state: alpha 0.05 and no margin unless a test gives one (the
    function itself has no default: a sweep's rule is conf/config.yaml's)."""
    return paired_summary(deltas, alpha, margin, **kwargs)


def test_t_interval_and_p_value_match_scipy():
    d = np.array([0.05, 0.08, 0.02, 0.06, 0.04])
    s = summary(d)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert s.n == 5
    assert s.mean == pytest.approx(d.mean())
    assert s.se == pytest.approx(stats.sem(d))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    assert s.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert s.verdict == POSITIVE


def test_negative_and_inconclusive_and_margin():
    assert summary([-0.10, -0.12, -0.08]).verdict == NEGATIVE
    assert summary([0.05, -0.04, 0.01]).verdict == INCONCLUSIVE
    # significant but smaller than the practical margin, and tight: no practical difference
    assert summary([0.004, 0.005, 0.006], margin=0.01).verdict == EQUIVALENT
    assert summary([0.004, 0.005, 0.006], margin=0.0).verdict == POSITIVE


def test_insufficient_seeds():
    assert summary([0.3]).verdict == INSUFFICIENT
    assert summary([]).verdict == INSUFFICIENT
    assert math.isnan(summary([0.3]).ci_low)
    # a cell with one seed is not part of the Holm family
    adjusted = adjust([summary([0.3]), summary([0.05, 0.07, 0.03])])
    assert adjusted[0].verdict == INSUFFICIENT and adjusted[1].p_adjusted == pytest.approx(adjusted[1].p_direction)


def test_identical_deltas_have_a_degenerate_interval_and_no_p_value():
    s = summary([0.02, 0.02, 0.02])
    assert s.ci_low == s.ci_high == pytest.approx(0.02)
    assert s.zero_variance and math.isnan(s.p_value), "zero variance: no test, p is n/a, not 0"
    assert s.verdict == POSITIVE  # the limit of the rule as se -> 0: the margin alone decides
    assert summary([0.005, 0.005], margin=0.01).verdict == EQUIVALENT
    assert summary([0.0, 0.0]).verdict == INCONCLUSIVE


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm(p)[4])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([0.02, 0.5]) == pytest.approx([0.04, 0.5])
    assert holm([]) == []


def test_holm_can_turn_a_verdict_inconclusive():
    lone = summary([0.05, 0.07, 0.03])  # p = 0.03: positive when it is the only cell
    assert lone.p_value < 0.05 and lone.verdict == POSITIVE
    noise = [summary([0.0, 0.01, -0.01]) for _ in range(3)]
    adjusted = adjust([lone, *noise])
    assert [a.p_adjusted for a in adjusted] == pytest.approx(holm([c.p_value for c in [lone, *noise]]))
    assert (adjusted[0].adj_low, adjusted[0].adj_high) != pytest.approx((lone.ci_low, lone.ci_high))
    assert adjusted[0].adj_low < 0 < adjusted[0].adj_high  # the printed interval agrees with the verdict
    assert adjusted[0].p_adjusted == pytest.approx(4 * lone.p_value)
    assert adjusted[0].verdict == INCONCLUSIVE  # 4 cells: 4 x 0.03 > 0.05


def test_wilcoxon_only_from_six_seeds_and_matches_scipy():
    assert math.isnan(summary([0.1, 0.2, 0.15, 0.12, 0.11]).p_wilcoxon)
    d = np.array([0.1, 0.2, 0.15, 0.12, 0.11, -0.01, 0.05])
    assert summary(d).p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    assert math.isnan(bootstrap_ci(np.array([0.05, 0.08, 0.02, 0.06, 0.04]), ALPHA)[0]), "under-covers below 10 seeds"
    d = np.array([0.05, 0.08, 0.02, 0.06, 0.04, 0.07, 0.03, 0.05, 0.06, 0.04, 0.05, 0.07])
    low, high = bootstrap_ci(d, ALPHA)
    assert (low, high) == bootstrap_ci(d, ALPHA)
    assert low < d.mean() < high
    assert d.min() <= low and high <= d.max()
    # the bootstrap interval of the mean is close to the t-interval for well-behaved data
    s = summary(d)
    assert abs(s.boot_low - s.ci_low) < 0.02 and abs(s.boot_high - s.ci_high) < 0.02


def _deltas(mean: float, sd: float, n: int) -> np.ndarray:
    """``n`` deltas with exactly this sample mean and standard deviation."""
    z = np.linspace(-1, 1, n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


def test_the_margin_applies_to_the_interval_not_the_point_estimate():
    """Issue 14: deltas with CI [+0.0025, +0.0295] and margin 0.01 were called positive on the mean alone."""
    t = stats.t.ppf(0.975, 4)
    d = _deltas(0.016, 0.0135 / t * math.sqrt(5), 5)
    s = summary(d, margin=0.01)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.0025, 0.0295), abs=1e-9)
    assert s.verdict == INCONCLUSIVE
    # the same spread shifted clear of the margin is positive; mirrored, negative
    assert summary(d + 0.01, margin=0.01).verdict == POSITIVE
    assert summary(-(d + 0.01), margin=0.01).verdict == NEGATIVE
    # the p-value tests H0: delta <= +margin (one-sided, at alpha/2 like the two-sided interval)
    p_pos = stats.ttest_1samp(d, 0.01, alternative="greater").pvalue
    assert s.p_direction == pytest.approx(2 * p_pos)


def test_equivalent_is_told_apart_from_too_few_seeds():
    tight = _deltas(0.001, 0.004, 8)  # many seeds, all within a point: no practical difference
    assert summary(tight, margin=0.01).verdict == EQUIVALENT
    assert summary(tight[:2] * 3, margin=0.01).verdict == INCONCLUSIVE  # two noisy seeds: cannot say
    assert summary(tight, margin=0.0).verdict != EQUIVALENT  # no margin, nothing is equivalent
    # TOST: both one-sided tests against the margins, each at alpha/2
    p_lo = stats.ttest_1samp(tight, -0.01, alternative="greater").pvalue
    p_hi = stats.ttest_1samp(tight, 0.01, alternative="less").pvalue
    assert summary(tight, margin=0.01).p_equivalence == pytest.approx(2 * max(p_lo, p_hi))


def test_verdicts_agree_with_the_printed_interval_in_random_families():
    """Positive <=> the interval at the cell's Holm level lies above +margin, negative <=> below -margin,
    equivalent <=> inside; over many seeded random families of cells with different sizes and effects."""
    rng = np.random.default_rng(14)
    margin, seen = 0.01, set()
    for _ in range(300):
        cells = [
            summary(rng.normal(rng.normal(0, 0.02), rng.uniform(0.002, 0.03), rng.integers(2, 9)), margin=margin)
            for _ in range(rng.integers(1, 9))
        ]
        for s in adjust(cells):
            seen.add(s.verdict)
            assert (s.verdict == POSITIVE) == (s.adj_low > margin), s
            assert (s.verdict == NEGATIVE) == (s.adj_high < -margin), s
            if s.verdict == EQUIVALENT:
                assert -margin < s.adj_low and s.adj_high < margin, s
            if s.verdict == INCONCLUSIVE:
                assert s.adj_low <= margin and s.adj_high >= -margin and not (-margin < s.adj_low < s.adj_high < margin)
            assert s.adj_low <= s.ci_low and s.adj_high >= s.ci_high, "Holm never narrows the interval"
    assert seen == {POSITIVE, NEGATIVE, EQUIVALENT, INCONCLUSIVE}


def _binomial_99(trials: int, p: float) -> tuple[int, int]:
    return int(stats.binom.ppf(0.005, trials, p)), int(stats.binom.ppf(0.995, trials, p))


def test_planted_effect_is_detected_with_the_stated_power():
    """A true effect of 2 x margin is called positive as often as ``power`` states (noncentral t), alone and in a
    family of 8 cells whose other 7 are null (Holm: at least the Bonferroni power); a null cell with margin 0 is
    called positive or negative at rate alpha."""
    rng = np.random.default_rng(7)
    margin, sd, n, sims = 0.01, 0.006, 5, 4000
    stated = power(2 * margin, sd, n, margin, ALPHA)
    assert 0.5 < stated < 0.95  # a regime where a miscalibrated rule shows
    hits = sum(summary(rng.normal(2 * margin, sd, n), margin=margin).verdict == POSITIVE for _ in range(sims))
    low, high = _binomial_99(sims, stated)
    assert low <= hits <= high, (hits / sims, stated)

    fam = 8
    hits = 0
    for _ in range(sims // 5):
        cells = [summary(rng.normal(2 * margin, sd, n), margin=margin)]
        cells += [summary(rng.normal(0.0, sd, n), margin=margin) for _ in range(fam - 1)]
        hits += adjust(cells)[0].verdict == POSITIVE
    bonferroni = power(2 * margin, sd, n, margin, ALPHA, family=fam)
    assert hits >= _binomial_99(sims // 5, bonferroni)[0], (hits / (sims // 5), bonferroni)

    null = [summary(rng.normal(0.0, sd, n), margin=0.0).verdict for _ in range(sims)]
    rejected = sum(v in (POSITIVE, NEGATIVE) for v in null)
    low, high = _binomial_99(sims, 0.05)
    assert low <= rejected <= high, rejected / sims


def test_wilcoxon_counts_pairs_after_dropping_zero_deltas():
    assert math.isnan(wilcoxon_p(np.array([0.0, 0.0, 0.1, 0.2, 0.15, 0.12, 0.11])))  # 5 nonzero of 7
    d = np.array([0.0, 0.1, 0.2, 0.15, 0.12, 0.11, 0.05])
    assert wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
