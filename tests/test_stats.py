"""The paired statistics and the verdict rule, checked against scipy on hand-built inputs."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.stats import (
    INCONCLUSIVE,
    INSUFFICIENT,
    NEGATIVE,
    POSITIVE,
    adjust,
    bootstrap_ci,
    holm,
    paired_summary,
    verdict,
)


def test_t_interval_and_p_value_match_scipy():
    d = np.array([0.05, 0.08, 0.02, 0.06, 0.04])
    s = paired_summary(d)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert s.n == 5
    assert s.mean == pytest.approx(d.mean())
    assert s.se == pytest.approx(stats.sem(d))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    assert s.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert s.verdict == POSITIVE


def test_negative_and_inconclusive_and_margin():
    assert paired_summary([-0.10, -0.12, -0.08]).verdict == NEGATIVE
    assert paired_summary([0.05, -0.04, 0.01]).verdict == INCONCLUSIVE
    # significant but smaller than the practical margin: not a verdict either way
    assert paired_summary([0.004, 0.005, 0.006], margin=0.01).verdict == INCONCLUSIVE
    assert paired_summary([0.004, 0.005, 0.006], margin=0.0).verdict == POSITIVE


def test_insufficient_seeds():
    assert paired_summary([0.3]).verdict == INSUFFICIENT
    assert paired_summary([]).verdict == INSUFFICIENT
    assert math.isnan(paired_summary([0.3]).ci_low)
    assert verdict(0.1, math.nan, math.nan) == INSUFFICIENT


def test_identical_deltas_have_a_degenerate_interval():
    s = paired_summary([0.02, 0.02, 0.02])
    assert s.ci_low == s.ci_high == pytest.approx(0.02)
    assert s.verdict == POSITIVE
    assert paired_summary([0.0, 0.0]).verdict == INCONCLUSIVE


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm(p)[4])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([0.02, 0.5]) == pytest.approx([0.04, 0.5])
    assert holm([]) == []


def test_holm_can_turn_a_verdict_inconclusive():
    lone = paired_summary([0.05, 0.07, 0.03])  # p = 0.03: positive when it is the only cell
    assert lone.p_value < 0.05 and lone.verdict == POSITIVE
    noise = [paired_summary([0.0, 0.01, -0.01]) for _ in range(3)]
    adjusted = adjust([lone, *noise])
    assert [a.p_adjusted for a in adjusted] == pytest.approx(holm([c.p_value for c in [lone, *noise]]))
    assert adjusted[0].p_adjusted == pytest.approx(4 * lone.p_value)
    assert adjusted[0].verdict == INCONCLUSIVE  # 4 cells: 4 x 0.03 > 0.05


def test_wilcoxon_only_from_six_seeds_and_matches_scipy():
    assert math.isnan(paired_summary([0.1, 0.2, 0.15, 0.12, 0.11]).p_wilcoxon)
    d = np.array([0.1, 0.2, 0.15, 0.12, 0.11, -0.01, 0.05])
    assert paired_summary(d).p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    d = np.array([0.05, 0.08, 0.02, 0.06, 0.04, 0.07])
    low, high = bootstrap_ci(d)
    assert (low, high) == bootstrap_ci(d)
    assert low < d.mean() < high
    assert d.min() <= low and high <= d.max()
    # the bootstrap interval of the mean is close to the t-interval for well-behaved data
    s = paired_summary(d)
    assert abs(s.boot_low - s.ci_low) < 0.02 and abs(s.boot_high - s.ci_high) < 0.02
