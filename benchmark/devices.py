"""Which GPU a job trains on: parallel jobs of a sweep are spread over the visible GPUs (job number modulo their
count), since Lightning's ``devices=1`` means "the first GPU" in every process and parallel jobs would all share it.

The device is where a run computes, not what it computes: it is a tag (``device``), never part of the run key.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from benchmark.launchers import runs_here
from benchmark.spec import JobSpec
from benchmark.train import TrainerSettings

GPU_ACCELERATORS = ("gpu", "cuda")


def job_device(job_num: int, n_visible: int, parallel: bool) -> int | None:
    """The index, among the visible GPUs, that job ``job_num`` of a sweep trains on; None leaves Lightning's choice
    (the first GPU): a job that runs alone, or a machine with fewer than two GPUs, has nothing to spread."""
    if job_num < 0:
        raise ValueError(f"job number {job_num} is negative; Hydra numbers a sweep's jobs from 0")
    if not parallel or n_visible < 2:
        return None
    return job_num % n_visible


def visible_gpus() -> int:
    """CUDA devices this process may use: torch counts only those ``CUDA_VISIBLE_DEVICES`` lists, and numbers them
    from 0 in that order, which is how Lightning's ``devices=[i]`` reads them too."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_problems(trainer: TrainerSettings, launcher: str | None, n_visible: int | None = None) -> list[str]:
    """A GPU job launched here needs its GPUs here: without them Lightning would fail at the first job, after the
    sweep started. Jobs of another launcher (Slurm, Ray) run on other machines, whose GPUs this one cannot see, so
    they are not checked. ``n_visible`` defaults to ``visible_gpus()``."""
    if trainer.accelerator not in GPU_ACCELERATORS or not runs_here(launcher):
        return []
    devices = trainer.devices
    need = len(devices) if isinstance(devices, (list, tuple)) else 1 if str(devices) in ("auto", "-1") else int(devices)
    n = visible_gpus() if n_visible is None else n_visible
    if n >= need:
        return []
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [
        f"trainer.accelerator={trainer.accelerator!r} with devices={devices!r} needs {need} CUDA device(s), but this "
        f"machine sees {n} (torch.cuda.is_available()={torch.cuda.is_available()}"
        + (f", CUDA_VISIBLE_DEVICES={seen!r}" if seen is not None else "")
        + "): use trainer=cpu here, or launch the jobs on GPU machines (hydra/launcher=slurm)"
    ]


def uses_one_gpu(trainer: TrainerSettings) -> bool:
    """A single-device GPU run; multi-device settings (DDP) are left as configured."""
    return trainer.accelerator in GPU_ACCELERATORS and trainer.devices in (1, "1")


def on_device(job: JobSpec, index: int) -> JobSpec:
    """``job`` with its trainer, and those of the baseline and reference it may train first, on GPU ``index``."""
    return replace(
        job,
        trainer=replace(job.trainer, devices=[index]),
        baseline=None if job.baseline is None else on_device(job.baseline, index),
        reference=None if job.reference is None else on_device(job.reference, index),
    )


def assign(job: JobSpec, job_num: int, parallel: bool, n_visible: int | None = None) -> JobSpec:
    """``job`` on its GPU when it is a parallel single-GPU job on a machine with several GPUs; else unchanged.
    ``n_visible`` defaults to ``visible_gpus()``."""
    if not uses_one_gpu(job.trainer):
        return job
    index = job_device(job_num, visible_gpus() if n_visible is None else n_visible, parallel)
    return job if index is None else on_device(job, index)


def device_tag(trainer: TrainerSettings) -> dict[str, str]:
    """The ``device`` tag of a run: the accelerator and the device list Lightning was given (``gpu:[1]``)."""
    return {"device": f"{trainer.accelerator}:{trainer.devices}"}
