"""Parallel jobs on a machine with several GPUs train on distinct GPUs (job number modulo the visible GPUs); a job
that runs alone, a CPU job and a multi-device job keep their settings. No GPU is needed: the assignment is a pure
function of the job number, the visible GPU count and the launcher, applied to real composed jobs."""

from __future__ import annotations

import pytest
from conftest import compose

from benchmark.compose import compose_job
from benchmark.devices import assign, device_tag, job_device
from benchmark.threads import parallel_launcher


@pytest.mark.parametrize(
    ("n_visible", "expected"),
    [(2, [0, 1, 0, 1, 0]), (3, [0, 1, 2, 0, 1]), (4, [0, 1, 2, 3, 0])],
)
def test_parallel_jobs_take_job_number_modulo_the_visible_gpus(n_visible, expected):
    assert [job_device(num, n_visible, parallel=True) for num in range(5)] == expected


@pytest.mark.parametrize(("n_visible", "parallel"), [(0, True), (1, True), (4, False)])
def test_one_gpu_or_one_job_at_a_time_leaves_lightnings_choice(n_visible, parallel):
    assert {job_device(num, n_visible, parallel) for num in range(5)} == {None}


def test_a_negative_job_number_is_refused():
    with pytest.raises(ValueError, match="job number -1"):
        job_device(-1, 2, parallel=True)


def test_the_parallel_launcher_is_recognised_from_its_composed_config():
    assert parallel_launcher(compose(["hydra/launcher=parallel"]).hydra.launcher)
    assert not parallel_launcher(compose(["hydra/launcher=parallel", "hydra.launcher.n_jobs=1"]).hydra.launcher)
    assert not parallel_launcher(compose([]).hydra.launcher)  # the basic launcher: one job at a time


def test_a_gpu_job_its_baseline_and_pretraining_move_to_the_assigned_gpu_without_changing_keys():
    job = compose_job(["trainer=gpu", "strategy=finetune"])
    assert job.baseline is not None and job.trainer.devices == 1
    moved = assign(job, job_num=3, parallel=True, n_visible=2)
    assert moved.trainer.devices == [1] and moved.baseline.trainer.devices == [1]
    assert (moved.run_key, moved.baseline_key, moved.cell_key) == (job.run_key, job.baseline_key, job.cell_key)
    assert moved.baseline.run_key == job.baseline.run_key
    assert device_tag(moved.trainer) == {"device": "gpu:[1]"}
    assert assign(job, job_num=3, parallel=False, n_visible=2) is job


def test_cpu_and_multi_device_jobs_are_left_as_configured():
    cpu = compose_job(["trainer=cpu"])
    assert assign(cpu, job_num=1, parallel=True, n_visible=4) is cpu
    ddp = compose_job(["trainer=gpu", "trainer.devices=2"])
    assert assign(ddp, job_num=1, parallel=True, n_visible=4) is ddp


def test_preflight_stops_a_gpu_job_launched_on_a_machine_without_its_gpus():
    """``trainer=gpu`` on this machine: a problem naming the setting, what the machine sees and the way out, before
    any training; with enough GPUs, or with jobs launched on other machines, there is nothing to report."""
    from benchmark.compose import build_trainer
    from benchmark.devices import gpu_problems, visible_gpus
    from benchmark.launchers import LOCAL_LAUNCHERS
    from benchmark.preflight import job_problems

    cfg = compose(["trainer=gpu", "strategy=scratch"])
    problems = [p for p in job_problems(cfg, dict(cfg.hydra.runtime.choices)) if "CUDA device" in p]
    if visible_gpus() == 0:
        assert problems == [
            "trainer.accelerator='gpu' with devices=1 needs 1 CUDA device(s), but this machine sees 0 "
            f"(torch.cuda.is_available()=False{_visible_note()}): use trainer=cpu here, or launch the jobs on GPU "
            "machines (hydra/launcher=slurm)"
        ]
    else:
        assert problems == []
    gpu = build_trainer(compose(["trainer=gpu", "trainer.devices=[0,1]"]).trainer)
    assert "needs 2 CUDA device(s), but this machine sees 1" in gpu_problems(gpu, LOCAL_LAUNCHERS[1], n_visible=1)[0]
    assert gpu_problems(gpu, LOCAL_LAUNCHERS[0], n_visible=2) == []
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert gpu_problems(gpu, slurm, n_visible=0) == []  # its jobs run on the cluster's machines
    assert gpu_problems(build_trainer(compose(["trainer=cpu"]).trainer), LOCAL_LAUNCHERS[0], n_visible=0) == []


def _visible_note() -> str:
    import os

    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if seen is None else f", CUDA_VISIBLE_DEVICES={seen!r}"
