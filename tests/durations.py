"""A pytest plugin: ``--durations-file=PATH`` writes every test's time (setup + call + teardown) to a TSV file,
with the worker that ran it and when it started.

pytest's own ``--durations`` prints the slowest tests and the log loses them; this file keeps every test, so a run can
be compared with another (``scripts/slowest.py`` prints the slowest and the totals of such a file, or of a JUnit XML
report). Under pytest-xdist the controller receives every worker's reports, so one file holds the whole run; its
header holds the session's wall time and the number of workers, since the summed test time exceeds the wall time
when tests run side by side.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--durations-file", default=None, metavar="PATH",
                     help="write every test's seconds (setup + call + teardown) to PATH as TSV")  # fmt: skip


class _Recorder:
    def __init__(self, path: Path, workers: int) -> None:
        self.path, self.workers = path, workers
        self.started = time.time()
        self.seconds: dict[str, float] = defaultdict(float)
        self.outcome: dict[str, str] = {}
        self.began: dict[str, float] = {}  # when its setup started, seconds after the session's start
        self.worker: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration
        if report.when == "setup":
            self.began[report.nodeid] = report.start - self.started
            self.worker[report.nodeid] = getattr(report, "worker_id", "-")  # pytest-xdist's worker, e.g. gw0
        if report.failed:  # in setup, call or teardown
            self.outcome[report.nodeid] = "failed"
        elif report.when == "call" or report.skipped:
            self.outcome.setdefault(report.nodeid, report.outcome)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        wall = time.time() - self.started
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w") as f:
            f.write(f"# wall_s\t{wall:.2f}\tworkers\t{self.workers}\ttests\t{len(rows)}\n")
            f.write("seconds\toutcome\tworker\tstarted_s\ttest\n")
            for nodeid, seconds in rows:
                f.write(
                    f"{seconds:.3f}\t{self.outcome.get(nodeid, 'skipped')}\t{self.worker.get(nodeid, '-')}\t"
                    f"{self.began.get(nodeid, 0.0):.1f}\t{nodeid}\n"
                )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--durations-file")
    if path and not hasattr(config, "workerinput"):  # the xdist controller (or a plain run), never a worker
        workers = config.getoption("numprocesses", default=None) if config.pluginmanager.has_plugin("xdist") else None
        config.pluginmanager.register(_Recorder(Path(path), int(workers or 1)), "durations-file")
