"""The jobs of a sweep composed once per set of group choices (``benchmark.sweep_jobs``) are Hydra's own: the same
config, hydra node included, and the same errors, as composing each job from scratch."""

from __future__ import annotations

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark import sweep_jobs

JOBS = [
    ["source=synth_digits", "target=digits", "strategy=finetune", "label_budget=5", "seed=0", "experiment=quickstart"],
    ["source=synth_digits", "target=digits", "strategy=finetune", "label_budget=null", "seed=4",
     "experiment=quickstart"],
    ["source=shapes", "target=digits", "strategy=linear_probe", "label_budget=5", "seed=2", "experiment=quickstart",
     "trainer.threads=1", "cache_dir=/elsewhere"],
    ["strategy=partial_finetune", "strategy.frozen_stages=1", "budget.lr=0.01", "seed=1"],
    ["strategy=finetune", "+note=hello", "~scores", "source.weights.dataset.n_per_class=40", "seed=3"],
    ["strategy=finetune", "target@source.weights.dataset=shapes", "budget={epochs: 2, min_steps: 3}", "seed=0"],
    ["hydra/launcher=parallel", "hydra.sweep.dir=/tmp/x", "seed=7", "augment=light", "verdict.margin=0.02"],
]  # fmt: skip


def _full(overrides: list[str]):
    return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.fixture
def app():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sweep_jobs.forget()
        yield
        sweep_jobs.forget()


def test_a_shared_composition_equals_hydras_for_every_kind_of_override(app):
    for overrides in JOBS * 2:  # the second pass copies the memoised compositions
        shared = sweep_jobs.job_config(overrides)
        assert OmegaConf.to_container(shared, resolve=False) == OmegaConf.to_container(_full(overrides), resolve=False)
        assert OmegaConf.is_struct(shared) and not OmegaConf.is_readonly(shared.hydra)
    assert len(sweep_jobs._BASES) < len(JOBS)  # the quickstart jobs share one composition per (source, strategy)
    first, again = sweep_jobs.job_config(JOBS[0]), sweep_jobs.job_config(JOBS[0])
    first.seed = 99  # a job's config is its own copy
    assert again.seed == 0 and sweep_jobs.job_config(JOBS[0]).seed == 0


@pytest.mark.parametrize(
    "overrides",
    [["budget.epoch=3"], ["+seed=1"], ["~nothing_here"], ["strategy=no_such_strategy", "seed=1"]],
)
def test_a_bad_override_fails_as_in_hydras_composition(app, overrides):
    with pytest.raises(Exception) as full:
        _full(overrides)
    with pytest.raises(Exception) as shared:
        sweep_jobs.job_config(overrides)
    assert type(shared.value) is type(full.value)
    assert str(shared.value) == str(full.value)


def test_a_sweep_job_is_built_once_and_leaves_the_apps_config(app):
    from hydra.core.hydra_config import HydraConfig

    app_cfg = _full(["seed=5"])
    HydraConfig.instance().set_config(app_cfg)
    job = sweep_jobs.sweep_job(JOBS[2])
    assert sweep_jobs.sweep_job(JOBS[2]) is job
    assert HydraConfig.get().overrides.task == ["seed=5"]
    from benchmark.compose import compose_job

    assert (job.run_key, job.baseline_key, job.name) == (lambda j: (j.run_key, j.baseline_key, j.name))(
        compose_job(JOBS[2])
    )


def test_the_launchers_loader_gives_each_job_hydras_own_sweep_config(app):
    """What the sweeper's launcher gets for each job (``SharedCompositions.load_sweep_config``) is Hydra's
    ``load_sweep_config`` of the same sweep: the sweep's hydra overrides and the job's, the sweep's resolver cache;
    also after a round trip through pickle, as a joblib worker receives it."""
    import pickle

    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    gh = GlobalHydra.instance()
    hydra_overrides = ["hydra/launcher=parallel", "hydra.sweep.dir=/tmp/sweep_here", "hydra.job.chdir=false"]
    master = gh.hydra.compose_config("config", [*hydra_overrides, "seed=0,1"], run_mode=RunMode.MULTIRUN)
    assert list(master.hydra.overrides.hydra) == hydra_overrides
    loader = gh.config_loader()
    shared = sweep_jobs.SharedCompositions(loader)
    for wrapper in (shared, pickle.loads(pickle.dumps(shared))):
        for overrides in JOBS[:3] + JOBS[:3]:  # the second pass copies the memoised compositions
            ours, hydras = wrapper.load_sweep_config(master, overrides), loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_container(ours, resolve=False) == OmegaConf.to_container(hydras, resolve=False)
            assert ours.hydra.sweep.dir == "/tmp/sweep_here" and ours.hydra.mode == hydras.hydra.mode
    assert shared.get_sources() == loader.get_sources()  # everything else is Hydra's loader


def test_a_launched_job_takes_the_job_preflight_built_once(app):
    """``run_job`` takes the typed job preflight built for its overrides (the basic launcher runs jobs in the sweep's
    process), and the memo lets go of it: what its strategy holds while it trains is not kept for the whole sweep."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(_full(["seed=5"]))
    job = sweep_jobs.sweep_job(JOBS[2])
    assert sweep_jobs.take(JOBS[2]) is job
    assert sweep_jobs.take(JOBS[2]) is None and sweep_jobs.take(JOBS[0]) is None
    again = sweep_jobs.sweep_job(JOBS[2])  # asked again (the sweeper's next round): built again, the same job
    assert again is not job and again.run_key == job.run_key
