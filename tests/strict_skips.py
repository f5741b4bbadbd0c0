"""A pytest plugin: in CI, a skipped test is a failed test.

Every test in this suite guards a promise of the README. A skip (Chromium missing, an optional launcher not installed,
a fixture that cannot be written) would let CI go green while the promise went unchecked, so when ``CI=true`` (what
CI sets) or ``TRANSFER_BENCH_STRICT_SKIPS=1`` a skip is reported as a failure that names the skip's reason. Locally,
skips stay skips, so a developer without Chromium can still run the rest. ``xfail`` is not affected.
"""

from __future__ import annotations

import os

import pytest


def strict() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("TRANSFER_BENCH_STRICT_SKIPS") == "1"


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where every promised test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if strict() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if strict() and report.skipped:
        _fail(report)
