"""Honest selection data for tuning (README "Tuning"): the value a job returns to Hydra (what a tuning sweeper such
as Optuna maximises) is a validation metric that never reads the test split, ``validation=budget`` scores selection
on no more labels per class than training had, and preflight does not crash on a sweeper other than the app's."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import CONF, compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from benchmark import tracking
from benchmark.compose import build_job, run_identity
from benchmark.data import Splits, validation_subset
from benchmark.preflight import enumerates, preflight, sweep_overrides
from benchmark.run import run_job
from benchmark.splits import load_splits
from benchmark.targets.digits import Digits
from benchmark.train import SELECTED_VAL


class PoisonedDigits(Digits):
    """The bundled digits with every test label moved to the next class: a job that reads the test split to select
    anything would see it."""

    def load(self) -> Splits:
        splits = super().load()
        test = splits.test.subset(np.arange(len(splits.test)))
        test.labels = (test.labels + 1) % len(splits.classes)
        return Splits(splits.train, splits.val, test, splits.classes)


def test_the_budget_validation_subset_holds_at_most_the_budget_per_class_of_the_val_split():
    cfg = compose(["target=digits"])
    splits = load_splits("digits", instantiate(cfg.target), dict(cfg.target))
    labels = splits.val.labels
    idx = validation_subset(labels, "budget", 5, 0, "digits")
    counts = np.bincount(labels[idx], minlength=splits.num_classes)
    assert counts.max() == 5 and counts.min() == 5 and len(np.unique(idx)) == len(idx)
    assert np.array_equal(idx, validation_subset(labels, "budget", 5, 0, "digits"))  # seeded
    assert not np.array_equal(idx, validation_subset(labels, "budget", 5, 1, "digits"))  # by the run seed
    assert len(validation_subset(labels, "budget", None, 0, "digits")) == len(labels)  # every label: the whole split
    assert len(validation_subset(labels, "budget", 1000, 0, "digits")) == len(labels)  # a small class keeps all
    assert len(validation_subset(labels, "full", 5, 0, "digits")) == len(labels)
    with pytest.raises(ValueError, match=r"validation='oracle'.*full, budget"):
        validation_subset(labels, "oracle", 5, 0, "digits")


def _job(overrides: list[str]):
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg, build_job(cfg, dict(cfg.hydra.runtime.choices))


def test_validation_budget_is_part_of_the_run_key_only_when_not_the_default():
    cfg, full = _job(["label_budget=5"])
    choices = dict(cfg.hydra.runtime.choices)
    assert "validation" not in run_identity(cfg, choices, "finetune", cfg.strategy, True, full.trainer)
    _, budget = _job(["label_budget=5", "validation=budget"])
    assert budget.run_key != full.run_key and budget.baseline_key != full.baseline_key
    assert budget.baseline.validation == "budget"  # the pair validates on the same examples
    assert "validation" in budget.variant
    assert budget.params["validation"] == "budget"
    with pytest.raises(ValueError, match=r"validation='test'.*full, budget"):
        _job(["validation=test"])


def _run(store: str, tmp_path, target: str | None) -> tuple[float | None, dict[str, float], dict[str, str]]:
    overrides = ["strategy=scratch", "label_budget=5", "validation=budget", "selection=best_val", "budget.epochs=4",
                 "budget.min_steps=0", f"tracking.uri={store}", "tracking.experiment=tuning",
                 f"cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    if target:
        overrides.append(f"target._target_={target}")
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    value = run_job(cfg)
    client = tracking.open_store(store)
    runs = client.search_runs([client.get_experiment_by_name("tuning").experiment_id], order_by=["start_time DESC"])
    return value, runs[0].data.metrics, runs[0].data.tags


def test_a_poisoned_test_split_changes_no_objective(store, tmp_path):
    """The same job on the digits and on the digits with every test label wrong: identical objective (the selected
    weights' validation accuracy, from the label-budget subset of the validation split), a different test/acc."""
    clean, clean_metrics, tags = _run(store, tmp_path, None)
    poisoned, poisoned_metrics, _ = _run(store, tmp_path, f"{__name__}.PoisonedDigits")
    assert clean is not None and clean == clean_metrics[SELECTED_VAL]
    assert poisoned == clean
    assert poisoned_metrics["test/acc"] != clean_metrics["test/acc"]
    assert clean_metrics["data/val_examples"] == 50  # 5 per class of the 10 digits
    assert tags["validation"] == "budget"


OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _optuna_sweep(params: dict[str, str]):
    """The primary config as an Optuna sweep would hand it to the callback (the sweeper is not installed here: the
    callback and preflight read only its ``_target_`` and ``params``)."""
    cfg = compose(["label_budget=5"])
    with open_dict(cfg):
        cfg.hydra.sweeper = {"_target_": OPTUNA, "direction": "maximize", "n_trials": 4, "params": params}
    return cfg


def test_preflight_of_a_tuning_sweeper_checks_every_choice_and_both_ends_of_every_interval(caplog):
    cfg = _optuna_sweep({"budget.lr": "tag(log, interval(1.0e-4, 1.0e-2))", "budget.epochs": "int(interval(2, 8))",
                         "strategy": "choice(scratch, finetune)"})  # fmt: skip
    assert not enumerates(cfg) and enumerates(compose([]))
    jobs = sweep_overrides(cfg)
    assert len(jobs) == 8 and ["budget.lr=0.0001", "budget.epochs=2", "strategy=scratch", "label_budget=5"] in jobs
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"), caplog.at_level(logging.WARNING):
        HydraConfig.instance().set_config(cfg)
        assert preflight(cfg) == []
    assert f"hydra.sweeper is {OPTUNA}" in caplog.text and "not the trials it will run" in caplog.text


def test_preflight_of_a_tuning_sweeper_reports_a_bad_choice():
    cfg = _optuna_sweep({"budget.lr": "interval(1.0e-4, 1.0e-2)", "strategy": "choice(scratch, fine_tune)"})
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        HydraConfig.instance().set_config(cfg)
        problems = preflight(cfg)
    assert len(problems) == 1 and "fine_tune" in problems[0] and "(+1 more jobs)" in problems[0], problems
