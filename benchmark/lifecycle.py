"""A run's life in MLflow as one context manager: open (create, or resume an interrupted run in place), log, then
finish, or fail with the traceback. Nothing is lost: a failure leaves a FAILED run (KILLED on Ctrl-C or SIGTERM)
with a ``failure_reason`` tag, never a run stuck RUNNING. With ``tracking.system_metrics=true`` MLflow samples the
machine (``system/*`` metrics) while the run is open (``benchmark.lineage``).

A run writes a resumable checkpoint while it trains (``cache_dir/checkpoints/<run_key>.ckpt``) next to an owner file
naming its MLflow run; both are removed when the run finishes, and kept when it fails so that the next attempt
resumes it (``benchmark.job``'s ``rerun=none``). A diverged run's checkpoint is removed: resuming would diverge again.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark import tracking
from benchmark.callbacks import Diverged
from benchmark.devices import device_tag
from benchmark.lineage import system_metrics
from benchmark.spec import Context, JobSpec

log = logging.getLogger(__name__)


@dataclass
class OpenRun:
    """The run a job trains in: its MLflow id, its resumable checkpoint, whether it resumed an interrupted run."""

    run_id: str
    checkpoint: Path
    resumed: bool


def checkpoint_path(job: JobSpec, ctx: Context) -> Path:
    return ctx.cache_dir / "checkpoints" / f"{job.run_key}.ckpt"


def resumable_run(job: JobSpec, ctx: Context) -> str | None:
    """The id of an interrupted run of this key whose checkpoint is on disk, or None (always None unless
    ``ctx.rerun`` is ``none``: the other choices ask for a fresh run)."""
    if ctx.rerun != "none":
        return None
    ckpt = checkpoint_path(job, ctx)
    owner = ckpt.with_suffix(".json")
    if not (ckpt.is_file() and owner.is_file()):
        return None
    run_id = json.loads(owner.read_text()).get("run_id")
    try:
        run = ctx.client.get_run(run_id)
    except Exception:  # the store was replaced: the checkpoint belongs to a run that no longer exists
        return None
    if run.info.status in ("FAILED", "KILLED") and run.data.tags.get("run_key") == job.run_key:
        return run_id
    return None


@contextlib.contextmanager
def tracked_run(job: JobSpec, ctx: Context, resume_run_id: str | None = None) -> Iterator[OpenRun]:
    """Open the job's run (``resume_run_id``: reopen that interrupted run, its curves continue), yield it, and end it
    FINISHED when the block completes; any exception (Ctrl-C included) ends it FAILED or KILLED and is re-raised."""
    ckpt = checkpoint_path(job, ctx)
    owner = ckpt.with_suffix(".json")
    where = {**threads_tag(), **device_tag(job.trainer)}  # this process's business, not the run's identity
    if resume_run_id:
        run_id = resume_run_id
        ctx.client.update_run(run_id, status="RUNNING")
        tracking.set_tags(ctx.client, run_id, {**tracking.owner_tags(), "resumed": "true", **where})
        ctx.client.delete_tag(run_id, "failure_reason")
        log.info("resuming %s from %s (MLflow run %s)", job.name, ckpt, run_id)
    else:
        for stale in (ckpt, owner):
            stale.unlink(missing_ok=True)
        run_id = tracking.create_run(ctx.client, ctx.experiment_id, job.name, {**job.tags(ctx), **where},
                                     ctx.parent_run_id)  # fmt: skip
        log.info("training %s (MLflow run %s)", job.name, run_id)
    try:
        if not resume_run_id:
            tracking.log_params(ctx.client, run_id, job.params)
            if job.config_yaml:
                ctx.client.log_text(run_id, job.config_yaml, "config.yaml")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        owner.write_text(json.dumps({"run_id": run_id, "name": job.name}))
        with system_metrics(ctx.client, run_id, ctx.lineage, resumed=bool(resume_run_id)):
            yield OpenRun(run_id, ckpt, bool(resume_run_id))
        tracking.end_run(ctx.client, run_id)
        for done in (ckpt, owner):
            done.unlink(missing_ok=True)
    except BaseException as exc:
        if isinstance(exc, Diverged):
            tracking.set_tags(ctx.client, run_id, {"diverged": "true"})
            for stale in (ckpt, owner):  # resuming a diverged run would diverge again
                stale.unlink(missing_ok=True)
        status = tracking.record_failure(ctx.client, run_id, exc)
        log.error("%s ended %s: %s", job.name, status, exc)
        raise


def threads_tag() -> dict[str, str]:
    """The torch threads this process trains with (``benchmark.threads.job_threads``: cores shared among parallel
    jobs); a tag, not a param, since it is no part of the result and a resumed run may get another number."""
    return {"threads": str(torch.get_num_threads())}
