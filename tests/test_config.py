"""Contract tests over the conf folders: every option composes (real Hydra) and builds a typed job.

A new YAML in conf/source, conf/target, conf/strategy, conf/trainer, conf/tracking or conf/experiment is picked up
here without editing this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, compose, options, run_entry
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmark import tracking
from benchmark.compose import build_job
from benchmark.report import load_runs

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
        overrides += [f"source.weights.path={tmp_path / 'w.safetensors'}", "source.arch=test_resnet"]
    if source == "hub":
        overrides.append("source.tag=test_resnet.r160_in1k")
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
    assert (job.baseline is None) == job.meta.is_baseline  # scratch, cluster_random, anomaly_random
    if job.baseline is not None:
        assert job.baseline.meta.is_baseline and not job.baseline.meta.uses_source_weights


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
    with pytest.raises(
        ValueError,
        match=r"weights._target_='magic' is not a weights kind; kinds: file \(benchmark"
        r".sources.file.FileWeights\), hub .*none .*pretrain \(benchmark.sources.pretrain.PretrainWeights",
    ):
        _job(["source.weights._target_=magic"])


# ----------------------------------------------------------------------------------------------------------------
# Where runs are recorded (docs/guide/daily-use.md ("Config groups"): the default store is sqlite:///<project>/mlflow.db;
# `tracking.uri=...` or MLFLOW_TRACKING_URI override it), through the real entry point


def _entry_point(cwd: Path, args: list[str], env_uri: str | None) -> subprocess.CompletedProcess:
    """``python -m benchmark.run <args>`` of this checkout, started in ``cwd`` (the project directory)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("TRANSFER_BENCH_CACHE", None)
    if env_uri:
        env["MLFLOW_TRACKING_URI"] = env_uri
    cmd = [sys.executable, "-m", "benchmark.run", *args]
    return run_entry(cmd, cwd=cwd, env=env, timeout=600)


def _recorded(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("transfer-bench")
    return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.mark.parametrize("given", ["default", "env", "env_and_override"])
def test_the_store_is_the_projects_unless_overridden(tmp_path, given):
    """A job that fails after opening its store (500 labels per class do not exist; a single run has no preflight)
    leaves its FAILED run in the store the README promises, and nowhere else."""
    project = tmp_path / "project"
    project.mkdir()
    env_uri = f"sqlite:///{tmp_path / 'env' / 'mlflow.db'}" if given != "default" else None
    cli_uri = f"sqlite:///{tmp_path / 'cli' / 'mlflow.db'}"
    args = [
        "strategy=scratch",
        "label_budget=500",
        *([f"tracking.uri={cli_uri}"] if given == "env_and_override" else []),
    ]
    result = _entry_point(project, args, env_uri)
    assert result.returncode != 0
    expected = {"default": f"sqlite:///{project / 'mlflow.db'}", "env": env_uri, "env_and_override": cli_uri}[given]
    (run,) = _recorded(expected)
    assert run.info.status == "FAILED" and "label_budget=500" in run.data.tags["failure_reason"]
    stores = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("mlflow.db"))
    assert stores == [
        {"default": "project/mlflow.db", "env": "env/mlflow.db", "env_and_override": "cli/mlflow.db"}[given]
    ]


def test_reports_and_team_mode_read_the_same_defaults(store, tmp_path, monkeypatch):
    """``benchmark.report`` reads ``$MLFLOW_TRACKING_URI``, else ``<current directory>/mlflow.db`` (the store fixture
    lives at ``tmp_path/mlflow.db``); ``tracking=server`` points at 127.0.0.1:5000 unless the variable is set."""
    client = tracking.open_store(store)
    rid = tracking.create_run(client, tracking.ensure_experiment(client, "here"), "r", {"role": "transfer"})
    tracking.end_run(client, rid)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_runs("here")["run_id"].tolist() == [rid]
    assert compose(["tracking=server"]).tracking.uri == "http://127.0.0.1:5000"
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    tracking.open_store(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    with pytest.raises(ValueError, match=r"no MLflow experiment 'here'"):
        load_runs("here")
    assert compose(["tracking=server"]).tracking.uri == elsewhere


# ----------------------------------------------------------------------------------------------------------------
# Preflight (docs/how-to/resume-and-outages.md: bad learning rates are reported before anything trains)


def test_bad_learning_rates_stop_a_sweep_before_training(tmp_path, store):
    args = ["-m", "strategy=scratch", "budget.lr=-1,0,inf,nan", f"tracking.uri={store}",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    result = _entry_point(tmp_path, args, None)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Preflight: 4 problem(s); nothing was trained." in result.stderr
    for value in ("-1.0", "0.0", "inf", "nan"):
        assert f"budget.lr must be a positive finite number, got {value}" in result.stderr, value
    assert MlflowClient(store).search_runs([e.experiment_id for e in MlflowClient(store).search_experiments()]) == []
    assert not (tmp_path / "cache").exists() and not (tmp_path / "sweep" / "transfer_bench_jobs").exists()


def test_every_default_of_the_verdict_rule_seeds_and_rerun_is_the_yamls():
    """A default has one home, conf/config.yaml: the code that runs without a composed config (the report's functions
    and command line, the sequential design, a job's context) takes it from there; the sweep's saved state and the
    statistics have none of their own, so nothing can disagree with the YAML."""
    import dataclasses
    import inspect

    from omegaconf import OmegaConf

    from benchmark import config_defaults, sequential, stats, sweep
    from benchmark.config_path import CONF_DIR
    from benchmark.report import build, cells, cli
    from benchmark.spec import Context

    conf = OmegaConf.load(CONF_DIR / "config.yaml")
    rule = {"metric": conf.verdict.metric, "alpha": conf.verdict.alpha, "margin": conf.verdict.margin,
            "at_cap": conf.verdict.at_cap}  # fmt: skip
    for fn in (cells.summarize, build.build_report):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in rule} == rule, fn.__qualname__
    args = cli.parser().parse_args(["--experiment", "x"])
    assert {k: getattr(args, k) for k in rule} == rule
    for k in ("alpha", "margin"):
        assert inspect.signature(stats.paired_summary).parameters[k].default is inspect.Parameter.empty
    fields = sweep.SweepState.__dataclass_fields__
    assert all(fields[k].default is dataclasses.MISSING for k in rule)
    d = sequential.SequentialDesign()
    assert (d.min_seeds, d.max_seeds, d.step, d.shape, d.futility, d.alpha, d.margin) == (
        conf.seeds.min, conf.seeds.max, conf.seeds.step, conf.seeds.shape, conf.seeds.futility, rule["alpha"],
        rule["margin"])  # fmt: skip
    assert Context.__dataclass_fields__["rerun"].default == conf.rerun == config_defaults.RERUN
    with pytest.raises(KeyError, match=r"no 'verdict\.nope'"):
        config_defaults.default("verdict.nope")
