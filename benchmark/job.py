"""One sweep job: ensure the matched baseline (and reference), then reuse or train the run, then compare.

Identity and reuse follow DomainBed's "done" files, kept in MLflow: a FINISHED run whose ``run_key`` tag equals the
job's key is never recomputed. A transfer job whose baseline (``baseline_key``) has no FINISHED run trains it first,
under a file lock, so parallel jobs train each baseline once and every later job (even in another sweep) reuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from benchmark import phases, tracking
from benchmark.callbacks import RunWatch
from benchmark.compare import (
    delta_values,
    deltas_recorded,
    flag_provenance,
    log_deltas,
    log_scores,
    only_deltas,
    provenance_clean,
    scores_recorded,
)
from benchmark.lifecycle import resumable_run, tracked_run
from benchmark.recipe import train
from benchmark.spec import Context, JobOutcome, JobSpec
from benchmark.train import SELECTED_VAL
from benchmark.tuning import ensure_tuned
from benchmark.util import file_lock

log = logging.getLogger(__name__)


def execute(job: JobSpec, ctx: Context) -> JobOutcome:
    """Run one job: its baseline first (transfer jobs), then the job itself, then its deltas."""
    baseline = None
    if job.baseline is not None:
        baseline = ensure_cell_run(job.baseline, ctx)
    reference = None
    if job.reference is not None:
        reference = execute(job.reference, ctx)  # a transfer job of its own: its baseline is this job's
    outcome = ensure_cell_run(job, ctx)
    if baseline is not None:
        outcome.baseline_run_id = baseline.run_id
        outcome.baseline_reused = baseline.reused
        with phases.phase("compare"):
            outcome.deltas = log_deltas(ctx.client, outcome.run_id, baseline.run_id)
            flag_provenance(ctx.client, outcome.run_id, baseline.run_id)
    if reference is not None:
        outcome.reference_run_id = reference.run_id
        with phases.phase("compare"):
            outcome.deltas.update(log_deltas(ctx.client, outcome.run_id, reference.run_id, prefix="reference"))
    if job.scores and job.meta.uses_source_weights and not job.is_baseline:
        with phases.phase("scores"):
            log_scores(job, ctx, outcome.run_id)
    return outcome


def recorded_outcome(job: JobSpec, finished: Mapping[str, Any]) -> JobOutcome | None:
    """What ``execute`` would return for ``job`` when it would train nothing and write nothing, else None.

    ``finished`` maps run keys to their newest FINISHED MLflow run (``tracking.finished_runs``: one query for a
    whole sweep). The job is done when its run, its baseline's and its reference's are finished, and everything
    ``execute`` then adds to a reused run is already there: the deltas against the same baseline (and reference)
    run, no provenance mismatch to flag, the pair's scores. Tuned cells run their study (``benchmark.tuning``), so
    they are never done here. A sweeper records such a job without launching it (``benchmark.reuse``)."""
    if job.tuning.active:
        return None
    run = finished.get(job.run_key)
    if run is None:
        return None
    outcome = JobOutcome(run.info.run_id, True, metrics=dict(run.data.metrics))
    if job.baseline is not None:
        base = finished.get(job.baseline.run_key)
        if job.baseline.tuning.active or base is None:
            return None
        values = delta_values(run, base)
        if not (deltas_recorded(run, base, values) and provenance_clean(run, base)):
            return None
        outcome.baseline_run_id, outcome.baseline_reused = base.info.run_id, True
        outcome.deltas = only_deltas(values)
    if job.reference is not None:
        reference = recorded_outcome(job.reference, finished)
        if reference is None:
            return None
        ref = finished[job.reference.run_key]
        values = delta_values(run, ref, prefix="reference")
        if not deltas_recorded(run, ref, values, prefix="reference"):
            return None
        outcome.reference_run_id = ref.info.run_id
        outcome.deltas.update(only_deltas(values, prefix="reference"))
    if job.scores and job.meta.uses_source_weights and not job.is_baseline and not scores_recorded(job, run):
        return None
    return outcome


def objective(metrics: dict[str, float], selection: str) -> float | None:
    """What a job returns to Hydra, the value a tuning sweeper (Optuna) maximises: the validation accuracy of the
    selected weights (``val/selected_acc``), never a ``test/`` metric, so a study never selects on the test split.
    Runs recorded before that metric existed fall back to their last ``val/acc`` under ``selection=last`` (the same
    value); None when the run validated nothing (evaluation protocols)."""
    if SELECTED_VAL in metrics:
        return float(metrics[SELECTED_VAL])
    if selection == "last" and "val/acc" in metrics:
        return float(metrics["val/acc"])
    return None


def ensure_cell_run(job: JobSpec, ctx: Context) -> JobOutcome:
    """``ensure_run``, after the cell's study when ``tuning.trials > 0`` (``benchmark.tuning``)."""
    return ensure_tuned(job, ctx, ensure_run) if job.tuning.active else ensure_run(job, ctx)


def ensure_run(job: JobSpec, ctx: Context) -> JobOutcome:
    """Reuse the FINISHED run with ``job.run_key``, or train it (once, under a lock on the key).

    A FAILED or KILLED run of the same key that left a checkpoint is resumed in place (same MLflow run, its
    curves continue) unless ``ctx.rerun`` asks for a fresh run; otherwise a new run starts from scratch.
    """
    found = reusable_run(job, ctx)
    if found is None:
        with file_lock(ctx.cache_dir / "locks" / f"{job.run_key}.lock"):
            found = reusable_run(job, ctx)
            if found is None:
                return train_run(job, ctx, resumable_run(job, ctx))
    log.info("reusing FINISHED run %s (%s) for key %s", found.info.run_id, found.info.run_name, job.run_key)
    return JobOutcome(found.info.run_id, True, metrics=dict(found.data.metrics))


def reusable_run(job: JobSpec, ctx: Context):
    """The newest FINISHED run of the job's key, if ``ctx.rerun`` lets it be reused (``all``: only one this very
    sweep made, so a baseline several jobs share is trained again once, not once per job)."""
    with phases.phase("lookup"):
        found = tracking.find_finished(ctx.client, ctx.experiment_id, job.run_key)
    if found is not None and ctx.rerun == "all":
        made_here = ctx.sweep_id is not None and found.data.tags.get("sweep_id") == ctx.sweep_id
        return found if made_here else None
    return found


def train_run(
    job: JobSpec, ctx: Context, resume_run_id: str | None = None, watch: RunWatch | None = None
) -> JobOutcome:
    """Create (or reopen) the MLflow run, train and test (``benchmark.lifecycle.tracked_run``: a failure leaves a
    FAILED or KILLED run with its traceback, then re-raises). ``watch`` observes the run (tests)."""
    with phases.phase("run"), tracked_run(job, ctx, resume_run_id) as run:
        with phases.phase("setup"):  # fit and test are phases of their own (benchmark.train)
            metrics = train(job, ctx, run.run_id, run.checkpoint, watch)
        with phases.phase("log"):
            tracking.log_metrics(ctx.client, run.run_id, metrics)
    return JobOutcome(run.run_id, False, metrics=metrics)
