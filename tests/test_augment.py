"""Training augmentation: a config group, applied to the training split only, seeded so that a run and its
baseline (and a resumed run) see the same views, part of both run keys, never on cached frozen features."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import compose, options
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from benchmark import tracking
from benchmark.augment import Augment, AugmentedSet
from benchmark.compose import build_job
from benchmark.data import Preprocessing
from benchmark.job import execute
from benchmark.loaders import make_loader
from benchmark.spec import Context

PREP = Preprocessing()


def _job(overrides: list[str]):
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return build_job(cfg, dict(cfg.hydra.runtime.choices))


def _batches(data, seed: int, epochs: int = 2) -> list[torch.Tensor]:
    loader = make_loader(data, 8, True, seed)
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        out += [x for x, _ in loader]
    return out


@pytest.mark.parametrize("policy", options("augment"))
def test_every_policy_composes_and_enters_both_run_keys_unless_none(policy):
    job, plain = _job([f"augment={policy}"]), _job([])
    assert job.augment.policy == policy and job.baseline.augment == job.augment  # the pair shares it
    same = policy == "none"
    assert (job.run_key == plain.run_key) == same and (job.baseline_key == plain.baseline_key) == same


@pytest.mark.parametrize("policy", ["light", "timm"])
def test_views_are_seeded_by_run_seed_epoch_and_index(policy):
    x = torch.rand(20, 3, 32, 32) * 2 - 1
    data = TensorDataset(x, torch.arange(20) % 2)
    aug = Augment(policy=policy, min_scale=0.3, auto_augment="rand-m9-mstd0.5" if policy == "timm" else None)
    first, again = _batches(aug.wrap(data, PREP, 0), 0), _batches(aug.wrap(data, PREP, 0), 0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # a baseline sees the same views
    assert first[0].shape == (8, 3, 32, 32)
    assert not torch.equal(first[0], _batches(aug.wrap(data, PREP, 1), 1)[0])  # another seed: other views
    view = AugmentedSet(data, aug, PREP, 0)
    assert not torch.equal(view[(0, 3)][0], view[(1, 3)][0])  # a new view every epoch
    assert not torch.equal(view[(0, 3)][0], x[3])  # and not the image itself


def test_evaluation_protocols_refuse_augmentation():
    with pytest.raises(ValueError, match=r"augment=light has no effect on strategy 'cluster'"):
        _job(["augment=light", "strategy=cluster"])


def test_a_frozen_probe_with_augmentation_runs_the_backbone_instead_of_cached_features(tmp_path, store):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(path))
    job_overrides = ["source=local_file", "source.arch=test_resnet", "source.preprocessing.image_size=32",
                     f"source.weights.path={path}", "strategy=linear_probe", "augment=light", "label_budget=2",
                     "budget.epochs=1", "budget.min_steps=2", "budget.batch_size=16", "scores=false",
                     "strategy.probe.head=sgd"]  # fmt: skip
    job = _job(job_overrides)
    with pytest.raises(ValueError, match=r"augment=light with strategy 'linear_probe': its solved probe"):
        _job([o for o in job_overrides if o != "strategy.probe.head=sgd"])
    client = tracking.open_store(store)
    ctx = Context(client, tracking.ensure_experiment(client, "augment"), tmp_path / "cache")
    out = execute(job, ctx)
    metrics = MlflowClient(store).get_run(out.run_id).data.metrics
    assert "features/cached" not in metrics and metrics["data/train_examples"] == 20
    assert not (tmp_path / "cache" / "features").exists()
