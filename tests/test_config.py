"""Contract tests over the conf folders: every option composes (real Hydra) and builds a typed job.

A new YAML in conf/source, conf/target, conf/strategy, conf/trainer, conf/tracking or conf/experiment is picked up
here without editing this file.
"""

from __future__ import annotations

import pytest
from conftest import compose, options
from hydra.core.hydra_config import HydraConfig
from PIL import Image

from benchmark.run import build_job

NEEDS_FILES = {"mnist", "cifar10"}  # torchvision datasets: offline without files they must fail clearly


def _job(overrides: list[str]):
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return build_job(cfg, dict(cfg.hydra.runtime.choices))


def _image_tree(root):
    for c, colour in (("cat", 0), ("dog", 255)):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), colour).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("group", ["source", "target", "strategy", "trainer", "tracking", "experiment"])
def test_every_option_composes(group):
    for option in options(group):
        cfg = compose([f"{group}={option}"])
        assert cfg.hydra.runtime.choices[group] == option


@pytest.mark.parametrize("source", options("source"))
def test_every_source_builds(source, tmp_path):
    overrides = [f"source={source}"]
    if source == "local_file":
        (tmp_path / "w.safetensors").write_bytes(b"")
        overrides.append(f"source.weights.path={tmp_path / 'w.safetensors'}")
    job = _job(overrides)
    assert job.source.id == source
    assert job.baseline is not None and job.baseline.source.weights.kind == "none"


@pytest.mark.parametrize("target", options("target"))
def test_every_target_builds_or_names_what_is_missing(target, tmp_path):
    overrides = [f"target={target}"]
    if target == "image_folder":
        overrides.append(f"target.root={_image_tree(tmp_path / 'tree')}")
    if target in NEEDS_FILES:
        overrides.append(f"target.root={tmp_path / 'nothing'}")
        with pytest.raises((ValueError, FileNotFoundError), match=r"download=true"):
            _job(overrides)
        return
    assert _job(overrides).target_id == target


@pytest.mark.parametrize("strategy", options("strategy"))
def test_every_strategy_builds(strategy):
    job = _job([f"strategy={strategy}"])
    assert job.strategy_id == strategy
    assert (job.baseline is None) == (job.strategy.role == "baseline")  # scratch, cluster_random, anomaly_random
    if job.baseline is not None:
        assert job.baseline.strategy.role == "baseline" and not job.baseline.strategy.uses_pretrained


def test_baseline_key_ignores_the_source_weights_but_not_the_architecture():
    a = _job(["source=synth_digits", "strategy=finetune"])
    b = _job(["source=shapes", "strategy=linear_probe"])
    assert a.baseline_key == b.baseline_key  # same arch and preprocessing: one shared baseline
    assert a.run_key != b.run_key
    scratch = _job(["source=shapes", "strategy=scratch"])
    assert scratch.run_key == a.baseline_key  # an explicit scratch job is the baseline itself
    assert _job(["source=synth_digits", "source.arch=test_efficientnet"]).baseline_key != a.baseline_key
    assert _job(["seed=1"]).baseline_key != a.baseline_key
    assert _job(["label_budget=5"]).baseline_key != a.baseline_key
    assert _job(["budget.epochs=3"]).baseline_key != a.baseline_key


def test_run_key_does_not_depend_on_machine_paths(tmp_path):
    a = _job(["cache_dir=/somewhere", "tracking.uri=sqlite:////x/mlflow.db"])
    b = _job([f"cache_dir={tmp_path}", "tracking.artifact_root=/elsewhere"])
    assert a.run_key == b.run_key and a.baseline_key == b.baseline_key


def test_bad_input_is_rejected_before_training():
    with pytest.raises(ValueError, match=r"unknown timm architecture 'test_resnett'.*test_resnet"):
        _job(["source.arch=test_resnett"])
    with pytest.raises(Exception, match=r"(?s)Could not find 'strategy/finetun'.*finetune"):
        compose(["strategy=finetun"])
    with pytest.raises(ValueError, match=r"unknown weights.kind 'magic'; choices: none, hub, file, pretrain"):
        _job(["source.weights.kind=magic"])
