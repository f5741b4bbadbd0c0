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
from benchmark.spec import check_rerun
from benchmark.sweep_jobs import sweep_job

log = logging.getLogger("benchmark")


@dataclass
class Done:
    """A job of the batch found done: its override list and what it returns to Hydra."""

    overrides: list[str]
    objective: float | None


def rerun_of(overrides: Sequence[str], default: str) -> str:
    """The job's ``rerun`` policy: its own ``rerun=`` override (the last one) or the sweep's ``default``."""
    value = default
    for o in overrides:
        key, _, v = o.partition("=")
        if key.lstrip("+") == "rerun":
            value = v
    return check_rerun(value)


def record_done(state: sweep.SweepState, batch: Sequence[Sequence[str]], first_num: int,
                rerun: str) -> dict[int, Done]:  # fmt: skip
    """Record the jobs of ``batch`` (job numbers ``first_num``...) that are done, as their launched jobs would
    (``sweep.write_record``, their ``[k/N] [reused] ...`` line); returns them by position in the batch.

    ``rerun=all`` trains every run again, so nothing is done. A job whose config cannot be composed or built is left
    to the launcher, which records its failure as for any job. Each record's phases are its own checks plus an
    even share of the one query (``lookup``)."""
    if rerun == "all":
        return {}
    t0 = time.perf_counter()
    client = tracking.open_store(state.tracking_uri)
    finished = tracking.finished_runs(client, state.experiment_id)
    query_s = time.perf_counter() - t0
    done: dict[int, Done] = {}
    found = []
    for i, overrides in enumerate(batch):
        with phases.job() as watch:
            try:
                if rerun_of(overrides, rerun) == "all":
                    continue
                with phases.phase("compose"):
                    job = sweep_job(overrides)
                with phases.phase("lookup"):
                    outcome = recorded_outcome(job, finished)
            except Exception as exc:  # the launched job reports it (a FAILED record, or a failure of its own)
                log.debug("job %s is launched: %s", list(overrides), exc)
                continue
        if outcome is not None:
            found.append((i, overrides, job, outcome, watch.metrics()))
    share = query_s / max(1, len(found))
    for i, overrides, job, outcome, spent in found:
        spent["time/job_s"] += share
        spent["time/job_lookup_s"] = spent.get("time/job_lookup_s", 0.0) + share
        num = first_num + i
        record = {"name": job.name, "overrides": list(overrides), **sweep.job_fields(job), "phases": spent,
                  **sweep.outcome_fields(outcome)}  # fmt: skip
        sweep.write_record(sweep.record_path(state, num), record)
        print(f"{sweep.progress(state, num)} {sweep.result_line(job, outcome)}", flush=True)
        done[i] = Done(list(overrides), objective(outcome.metrics, job.selection))
    if done:
        log.info("%d of %d jobs already done: recorded without launching them", len(done), len(batch))
    return done
