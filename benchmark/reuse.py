"""Jobs of a sweep that are already done, recorded by the launching process instead of launched.

A re-run sweep mostly reuses FINISHED runs, and a reused job costs Hydra more than it costs us: composing the job's
config twice (the sweeper's check and the launcher), its job directory and ``.hydra`` files, ~0.25 s a job against
our own ~0.1 s (store lookups, deltas, scores). Here every job of a batch is looked up at once: its typed job (built
by preflight already, ``benchmark.sweep_jobs``), the newest FINISHED run of every key in one query
(``tracking.finished_runs``), and ``benchmark.job.recorded_outcome``, which says whether running the job would train
or write anything. A job that would not gets the record, the printed line and the return value the launched job
would have given (``benchmark.run.run_job``); the others are launched as before, and their own lookups decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmark import phases, sweep, tracking
from benchmark.job import objective, recorded_outcome
from benchmark.spec import JobOutcome, JobSpec, check_rerun
from benchmark.sweep_jobs import sweep_job, sweep_rerun

log = logging.getLogger("benchmark")


@dataclass
class Done:
    """A job of the batch found done: its override list, typed job, outcome and phases (``benchmark.phases``)."""

    overrides: list[str]
    job: JobSpec
    outcome: JobOutcome
    phases: dict[str, float]

    @property
    def objective(self) -> float | None:
        """What the launched job would have returned to Hydra."""
        return objective(self.outcome.metrics, self.job.selection)


def find_done(state: sweep.SweepState, batch: Sequence[Sequence[str]], rerun: str) -> dict[int, Done]:
    """The jobs of ``batch`` that are done, by position in the batch.

    ``rerun=all`` trains every run again, so nothing is done. A job whose config cannot be composed or built is left
    to the launcher, which reports it as for any job. Each job's phases are its own checks plus an even share of the
    one query (``lookup``)."""
    if rerun == "all":
        return {}
    t0 = time.perf_counter()
    finished = tracking.finished_runs(tracking.open_store(state.tracking_uri), state.experiment_id)
    query_s = time.perf_counter() - t0
    done: dict[int, Done] = {}
    for i, overrides in enumerate(batch):
        with phases.job() as watch:
            try:
                with phases.phase("compose"):
                    job = sweep_job(overrides)
                if check_rerun(sweep_rerun(overrides)) == "all":  # its own rerun= or a swept group's
                    continue
                with phases.phase("lookup"):
                    outcome = recorded_outcome(job, finished)
            except Exception as exc:  # the launched job reports it (a FAILED record, or a failure of its own)
                log.debug("job %s is launched: %s", list(overrides), exc)
                continue
        if outcome is not None:
            done[i] = Done(list(overrides), job, outcome, watch.metrics())
    share = query_s / max(1, len(done))
    for d in done.values():
        d.phases["time/job_s"] += share
        d.phases["time/job_lookup_s"] = d.phases.get("time/job_lookup_s", 0.0) + share
    return done


def record(state: sweep.SweepState, first_num: int, done: dict[int, Done], batch_size: int) -> None:
    """Write the record of each done job (job number ``first_num`` + its position) and print its ``[k/N]`` line,
    as its launched job would have (``benchmark.run.run_job``)."""
    for i, d in sorted(done.items()):
        num = first_num + i
        fields = {"name": d.job.name, "overrides": d.overrides, **sweep.job_fields(d.job), "phases": d.phases,
                  **sweep.outcome_fields(d.outcome)}  # fmt: skip
        sweep.write_record(sweep.record_path(state, num), fields)
        print(f"{sweep.progress(state, num)} {sweep.result_line(d.job, d.outcome)}", flush=True)
    if done:
        log.info("%d of %d jobs already done: recorded without launching them", len(done), batch_size)
