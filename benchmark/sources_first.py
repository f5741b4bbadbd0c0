"""Sources first: a parallel sweep pretrains its sources in the launcher's own workers before its jobs start.

Jobs that share a harness-pretrained source wait on its lock while one of them pretrains it
(``benchmark.sources.pretrain``): on the quickstart with two workers, one worker sat idle for the whole pretraining of
each of its two sources (13 s each on a 2-core machine). Here the sweeper hands every distinct source whose weights the
jobs it is about to launch load to the joblib launcher's pool first, one task per source, so different sources are
pretrained (or converted, or fetched: whatever the weights kind does on first use) side by side. The pool is the one
the launcher then reuses (joblib keeps its workers while its settings are unchanged), so the workers' start-up is
paid once.

A task does what the first job of the source would have done: the job's own ``recipe.source_weights_file`` with the
job's context (store, experiment, sweep parent, cache), threads and device. Runs, keys and files are the same. A
source that fails here is left to the jobs, which try again and record the failure as a failed job does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from benchmark import devices, tracking
from benchmark.compose import build_lineage
from benchmark.recipe import source_weights_file
from benchmark.spec import Context, JobSpec
from benchmark.threads import job_threads, parallel_launcher, set_threads
from benchmark.util import stable_hash

log = logging.getLogger("benchmark")


def distinct_sources(jobs: list[JobSpec]) -> list[JobSpec]:
    """The first job of each distinct source (id and every ``source`` setting) whose weights ``jobs`` load, in order."""
    first: dict[str, JobSpec] = {}
    for job in jobs:
        if job.meta.uses_source_weights:
            settings = {k: v for k, v in job.params.items() if k.startswith("source/")}
            first.setdefault(stable_hash([job.source.id, settings]), job)
    return list(first.values())


def pretrain_in_pool(launcher: Any, jobs: list[JobSpec], config: DictConfig, state: Any) -> None:
    """Prepare the sources of ``jobs`` (``distinct_sources``) in the pool of ``launcher`` (a joblib launcher running
    several jobs at once), ``config`` the sweep's config, ``state`` its ``benchmark.sweep.SweepState``. Nothing for
    any other launcher, or when no job loads source weights; a source already in the cache costs its task a file
    check."""
    settings = getattr(launcher, "joblib", None)
    if settings is None or not parallel_launcher(config.hydra.launcher):
        return
    # here, not at the top: only a sweep on the joblib launcher (an optional Hydra plugin) needs joblib
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed

    sources = distinct_sources(jobs)
    if not sources:
        return
    cfg = dict(settings)
    cfg["backend"] = "loky"  # as the launcher sets it, so the launcher finds this very pool again
    process_joblib_cfg(cfg)
    threads = job_threads(config.trainer.get("threads"), config.hydra.launcher)
    cache = str(Path(config.cache_dir).resolve())
    log.info("preparing %d source(s) in the launcher's %s workers before the jobs", len(sources), cfg["n_jobs"])
    where = (state.tracking_uri, state.experiment_id, state.parent_run_id, state.sweep_id, cache, config.tracking)
    Parallel(**cfg)(delayed(_pretrain_source)(job, i, threads, *where) for i, job in enumerate(sources))


def _pretrain_source(job: JobSpec, num: int, threads: int, uri: str, experiment_id: str, parent_run_id: str | None,
                     sweep_id: str | None, cache_dir: str, tracking_cfg: DictConfig) -> None:  # fmt: skip
    """In a worker: the source's checkpoint, as the job's own set-up gets it (``recipe.source_weights_file``)."""
    set_threads(threads)
    job = devices.assign(job, num, parallel=True)
    try:
        ctx = Context(tracking.open_store(uri), experiment_id, Path(cache_dir), parent_run_id, sweep_id,
                      lineage=build_lineage(tracking_cfg))  # fmt: skip
        source_weights_file(job, ctx)
    except Exception as exc:  # the jobs of this source try again, and fail as jobs do, with their runs and records
        log.warning("pretraining source %s before the jobs failed (%s: %s); its jobs will try", job.source.id,
                    type(exc).__name__, exc)  # fmt: skip
