"""The paired statistics and the verdict rule, checked against scipy on hand-built inputs."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.stats import INCONCLUSIVE, INSUFFICIENT, NEGATIVE, POSITIVE, paired_summary, verdict


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
