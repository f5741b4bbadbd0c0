"""Torch threads of a job: the configured number, else the machine's cores shared among the jobs the launcher runs
at once on it (never more threads than cores in all)."""

from __future__ import annotations

import os

from omegaconf import DictConfig


def job_threads(configured: int | None, launcher: DictConfig) -> int:
    """Torch threads for one job: the configured number, else the cores shared among parallel launcher jobs
    (2 processes x 2 threads on 2 cores ran at half the speed of 2 x 1: never oversubscribe)."""
    if configured:
        return int(configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:  # one job at a time (basic launcher, or one cluster task per job)
        return cores
    parallel = cores if int(n_jobs) < 0 else min(int(n_jobs), cores)
    return max(1, cores // max(1, parallel))


def parallel_launcher(launcher: DictConfig) -> bool:
    """True when the launcher runs several jobs of the sweep at once on this machine (joblib's ``n_jobs``)."""
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    return n_jobs is not None and int(n_jobs) != 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: all cores); returns the number used."""
    import torch  # here, not at the top: tab completion and --help import this module and never train

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
