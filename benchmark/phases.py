"""Where a job's wall time goes: named phases timed with ``time.perf_counter`` around the real work, logged on the
job's run as ``time/job_<phase>_s`` next to ``time/job_s`` (``benchmark.run``) and written to its sweep record.

Phases count self time: a phase entered inside another pauses the outer one, so a job's phases add up to its wall
time and nothing is counted twice (a baseline trained inside a transfer job adds to that job's ``lookup``, ``run``,
``setup``, ``fit`` and ``test``). Outside a job (tests, the benchmark command calling ``ensure_run``) ``phase`` does
nothing. The phases: ``compose`` (typed job from the config), ``store`` (client, experiment), ``lookup`` (finished
runs of a key), ``run`` (create, params, end the MLflow run), ``setup`` (data, model, weights), ``fit``, ``test``,
``log`` (the run's metrics), ``compare`` (deltas), ``scores`` (the pair's transferability scores) and ``other``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

PREFIX = "time/job_"


class Stopwatch:
    """Self time per phase name; the innermost open phase is the one charged."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []
        self._mark = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        if self._open:
            name = self._open[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._charge()
        self._open.append(name)
        try:
            yield
        finally:
            self._charge()
            self._open.pop()

    def metrics(self) -> dict[str, float]:
        """``time/job_s`` (the sum: the job's wall time so far) and ``time/job_<phase>_s`` per phase."""
        self._charge()
        return {"time/job_s": sum(self.seconds.values()), **{f"{PREFIX}{k}_s": v for k, v in self.seconds.items()}}


_ACTIVE: Stopwatch | None = None


@contextlib.contextmanager
def job() -> Iterator[Stopwatch]:
    """Time one job: everything inside counts, as ``other`` unless a named phase claims it."""
    global _ACTIVE
    previous, watch = _ACTIVE, Stopwatch()
    _ACTIVE = watch
    try:
        with watch.phase("other"):
            yield watch
    finally:
        _ACTIVE = previous


def phase(name: str) -> AbstractContextManager:
    """Charge the block to phase ``name`` of the job being timed (nothing when no job is)."""
    return _ACTIVE.phase(name) if _ACTIVE is not None else contextlib.nullcontext()
