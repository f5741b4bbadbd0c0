"""Honest selection data for tuning (docs/tutorials/tuning.md): the value a job returns to Hydra (what a tuning
sweeper such
as Optuna maximises) is a validation metric that never reads the test split, ``validation=budget`` scores selection
on no more labels per class than training had, and preflight does not crash on a sweeper other than the app's."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, built_once, compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from benchmark import tracking
from benchmark.compose import build_job, compose_job, run_identity
from benchmark.data import Splits, TensorImageSet, label_subset, validation_subset
from benchmark.job import execute
from benchmark.preflight import enumerates, preflight, sweep_overrides
from benchmark.report import build_report, load_runs
from benchmark.report.tuning import default_variant, tuning_table
from benchmark.run import run_job
from benchmark.spec import Context
from benchmark.splits import load_splits
from benchmark.targets.base import Target
from benchmark.targets.digits import Digits
from benchmark.train import SELECTED_VAL
from benchmark.tuning import trial_job


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


# ----------------------------------------------------------------------------------------------------------------
# The tuning stage (tuning.trials > 0): a study per cell and per baseline, trials as runs of their own

TINY = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.min_steps=40",
        "budget.batch_size=32", "label_budget=5", "scores=false", "tuning.trials=2",
        "tuning.space.steps={choices:[20,40]}"]  # fmt: skip
"""Two trials of 20 or 40 steps on 5 labels per class, a source pretrained for one epoch: seconds per run. (At 2 labels
per class both sides stay near chance in validation whatever the trial's values, and nothing is selected.)"""


@pytest.fixture
def ctx(store, tmp_path):
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "tuning"), tmp_path / "cache")


@pytest.fixture(scope="session")
def finetune_study(shared_dir, _migrated_store) -> Path:
    """The tuned fine-tune of ``TINY`` with its baseline (both studies, their trials and the tuned pair), trained once
    per test session into a store and cache of its own; the tests that start from it copy both (``tuned_ctx``)."""

    def study(folder: Path) -> None:
        shutil.copy(_migrated_store, folder / "mlflow.db")
        client = tracking.open_store(f"sqlite:///{folder / 'mlflow.db'}")
        execute(compose_job([*TINY, "strategy=finetune"]),
                Context(client, tracking.ensure_experiment(client, "tuning"), folder / "cache"))  # fmt: skip
        tracking.checkpoint(folder / "mlflow.db")  # the copies below read the file alone

    return built_once(shared_dir / "finetune_study", study)


@pytest.fixture
def tuned_ctx(finetune_study, tmp_path):
    """A store and cache that already hold the tuned fine-tune of ``TINY`` (a copy of ``finetune_study``)."""
    shutil.copy(finetune_study / "mlflow.db", tmp_path / "mlflow.db")
    shutil.copytree(finetune_study / "cache", tmp_path / "cache")
    client = tracking.open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return Context(client, tracking.ensure_experiment(client, "tuning"), tmp_path / "cache")


def _runs(ctx, **tags) -> list:
    where = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    return ctx.client.search_runs([ctx.experiment_id], where, max_results=1000)


def _artifact(ctx, run, path: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(ctx.client.download_artifacts(run.info.run_id, path, tmp)).read_text()


def _trials(ctx, strategy: str) -> dict[int, object]:
    """Trial index -> its newest run (search order is newest first)."""
    return {int(r.data.tags["trial"]): r for r in reversed(_runs(ctx, role="trial", strategy=strategy))}


def test_trials_zero_is_the_default_recipe_and_leaves_run_keys_unchanged():
    job = compose_job(["trainer.fused_optimizer=false"])  # with the optimizer kernel of the runs of that time
    assert job.run_key == "67dcfabc5a08"  # the key of the default job before tuning existed (pinned)
    assert not job.tuning.active and job.baseline.tuning.trials == 0
    cfg = compose([])
    ident = run_identity(cfg, dict(cfg.hydra.runtime.choices), "finetune", cfg.strategy, True, job.trainer)
    assert "tuning" not in ident and "search" not in ident["strategy"]  # the strategy's search block is no setting
    tuned = compose_job(["tuning.trials=2"])
    assert tuned.run_key != job.run_key and tuned.baseline_key != job.baseline_key
    assert tuned.variant == "tuned=2xtpe"
    assert [d.name for d in tuned.tuning.space][-1] == "strategy.backbone_lr_scale"
    assert [d.name for d in tuned.baseline.tuning.space] == ["budget.lr", "budget.weight_decay", "budget.steps"]


def test_the_trials_of_a_study_share_one_label_subset_and_validation_examples():
    """Trial i trains on run seed trial_seed + i (initialisation, order) but draws its labelled and validation
    examples from the study's seed: values are compared on the same data, not on different subsets."""
    job = compose_job([*TINY, "strategy=finetune"])
    trials = [trial_job(job, i, {"budget.steps": 20}) for i in range(2)]
    assert [t.seed for t in trials] == [1000, 1001] and {t.data_seed for t in trials} == {1000}
    assert job.data_seed == job.seed == 0
    labels = load_splits(job.target_id, job.target, job.target_config).train.labels
    subsets = [label_subset(labels, t.label_budget, t.data_seed, t.target_id) for t in trials]
    assert np.array_equal(*subsets)
    assert trials[0].run_key != trials[1].run_key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tuning.sampler=grid", r"tuning.sampler='grid'.*tpe, random"),
        ("tuning.select=test", r"tuning.select='test'.*auto, oracle"),
        ("tuning.trials=-1", r"tuning.trials=-1"),
        ("+tuning.space.momentum_x={low:0.1,high:0.9}", r"'momentum_x' cannot be searched; choose among: .*lr"),
        ("tuning.space.lr={low:0.0,high:0.1,log:true}", r"log-scaled interval needs low > 0"),
        ("tuning.space.lr={low:0.1,high:0.01}", r"low=0.1, high=0.01 must be .* low < high"),
        ("+tuning.space.steps.step=2", r"unknown key\(s\) \[.step.\]; valid keys"),
        ("+strategy.search.gamma2={low:1,high:2}", r"strategy 'finetune' search: 'gamma2'.*backbone_lr_scale"),
        ("seed=1001", r"seed=1001 is one of the trial seeds 1000..1001"),
    ],
)
def test_bad_tuning_config_is_a_preflight_problem_naming_the_value_and_the_choices(override, message):
    cfg = compose(["tuning.trials=2", override])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        HydraConfig.instance().set_config(cfg)
        problems = preflight(cfg)
    assert len(problems) == 1 and re.search(message, problems[0]), problems


@pytest.mark.slow  # ~2 min on 2 shared cores: two studies per cell and a pretrained source
def test_a_pair_is_tuned_with_the_same_trials_on_selection_data_and_a_poisoned_test_split_changes_nothing(tuned_ctx):
    """Both sides get K trials on their own seeds (trial_seed + i), scored on the budget's validation subset, with
    no test metric; the tuned runs carry the chosen values and the cost; a poisoned test split changes no trial's
    score and not the choice. The pair's studies come from ``finetune_study``: this job finds them done."""
    ctx = tuned_ctx
    job = compose_job([*TINY, "strategy=finetune"])
    out = execute(job, ctx)
    assert out.reused and out.baseline_reused
    for strategy in ("finetune", "scratch"):
        trials = _trials(ctx, strategy)
        assert sorted(trials) == [0, 1]
        for i, run in trials.items():
            assert run.info.status == "FINISHED" and run.data.tags["seed"] == str(1000 + i)
            assert run.data.params["seed"] == str(1000 + i)  # what the trial logs is the seed it ran on
            assert not any(k.startswith("test/") for k in run.data.metrics), run.data.metrics
            assert run.data.metrics["data/val_examples"] == 50  # 5 per class of the 10 digits
            assert run.data.tags["tuning_select"] == "target_val" and "selection_oracle" not in run.data.tags
            assert run.data.params["budget/steps"] == run.data.params["trial.budget.steps"]
        subsets = {_artifact(ctx, r, "data/train_indices.json") for r in trials.values()}
        assert len(subsets) == 1  # one label subset for the study: trials differ in initialisation and order only
    tuned = ctx.client.get_run(out.run_id)
    assert tuned.data.tags["tuned"] == "true" and tuned.data.tags["role"] == "transfer"
    assert tuned.data.tags["tuning_key"] == job.cell_key and tuned.data.tags["seed"] == "0"
    assert tuned.data.metrics["tuning/trials"] == 2 and tuned.data.metrics["tuning/seconds"] > 0
    chosen = {k: v for k, v in tuned.data.params.items() if k.startswith("tuned.")}
    assert set(chosen) == {"tuned.budget.lr", "tuned.budget.weight_decay", "tuned.budget.steps",
                           "tuned.strategy.backbone_lr_scale"}  # fmt: skip
    trials = _trials(ctx, "finetune")  # the best objective; a tie goes to the earliest trial
    best = max((trials[i] for i in sorted(trials)), key=lambda r: r.data.metrics[SELECTED_VAL])
    assert chosen == {k.replace("trial.", "tuned."): v for k, v in best.data.params.items() if k.startswith("trial.")}
    baseline = ctx.client.get_run(out.baseline_run_id)
    assert baseline.data.metrics["tuning/trials"] == 2 and baseline.data.tags["tuned"] == "true"
    assert tuned.data.tags["baseline_key"] == baseline.data.tags["run_key"] and "delta/test/acc" in tuned.data.metrics

    clean = {s: {i: r.data.metrics[SELECTED_VAL] for i, r in _trials(ctx, s).items()} for s in ("finetune", "scratch")}
    assert all(len(set(scores.values())) == 2 for scores in clean.values()), clean  # so the comparison below can fail
    poisoned = compose_job([*TINY, "strategy=finetune", f"target._target_={__name__}.PoisonedDigits"])
    assert poisoned.cell_key != job.cell_key  # studies of their own: nothing is reused
    out2 = execute(poisoned, ctx)
    for side in (poisoned, poisoned.baseline):
        trials = {int(r.data.tags["trial"]): r for r in _runs(ctx, role="trial", tuning_key=side.cell_key)}
        assert {i: r.data.metrics[SELECTED_VAL] for i, r in trials.items()} == clean[side.strategy_id]
    tuned2 = ctx.client.get_run(out2.run_id)
    assert {k: v for k, v in tuned2.data.params.items() if k.startswith("tuned.")} == chosen
    base2 = ctx.client.get_run(out2.baseline_run_id)
    assert base2.data.metrics["test/acc"] != baseline.data.metrics["test/acc"]  # the test split was poisoned


@pytest.mark.slow  # ~2 min on 2 shared cores: two studies per cell and a pretrained source
def test_cells_sharing_a_baseline_share_its_study_and_a_rerun_resumes_without_repeating_a_trial(tuned_ctx):
    """The fine-tune's and its baseline's studies come from ``finetune_study``; the probe shares the baseline's."""
    ctx = tuned_ctx
    finetune = compose_job([*TINY, "strategy=finetune"])
    probe = compose_job([*TINY, "strategy=linear_probe", "strategy.probe.head=sgd"])  # a head the budget trains
    assert finetune.baseline.cell_key == probe.baseline.cell_key
    first = execute(finetune, ctx)
    execute(probe, ctx)
    assert len(_trials(ctx, "scratch")) == 2 and len(_trials(ctx, "linear_probe")) == 2  # the baseline's: once
    before = {r.info.run_id for r in _runs(ctx)}

    again = execute(finetune, ctx)  # resumes: every trial and the tuned runs are reused
    assert again.reused and again.baseline_reused and again.run_id == first.run_id
    assert {r.info.run_id for r in _runs(ctx)} == before

    last = _trials(ctx, "finetune")[1]
    ctx.client.delete_run(last.info.run_id)  # the last trial lost: a rerun trains that trial only
    trial0 = _trials(ctx, "finetune")[0].info.run_id
    again = execute(finetune, ctx)
    now = _trials(ctx, "finetune")
    assert sorted(now) == [0, 1] and now[0].info.run_id == trial0 and now[1].info.run_id != last.info.run_id
    assert now[1].data.params == last.data.params  # the same values were drawn again
    assert {r.info.run_id for r in _runs(ctx)} - before == {now[1].info.run_id}
    assert again.run_id == first.run_id  # the same choice: the tuned run is reused


DA = ["source=synth_digits", "target=synth_digits", "target.n_per_class=16", "target.seed=7", "strategy=dann",
      "source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.min_steps=8",
      "budget.batch_size=32", "label_budget=5", "scores=false", "tuning.trials=2",
      "tuning.space.steps={choices:[8]}"]  # fmt: skip
"""Domain adaptation trains on every target training image: a small rendered target keeps it to seconds."""


class TargetLabelsPoisoned(Target):
    """The wrapped target with its training and validation labels permuted (a fixed permutation each)."""

    def __init__(self, inner: Target):
        self.inner = inner

    def load(self) -> Splits:
        s = self.inner.load()
        rng = np.random.default_rng(0)
        train = TensorImageSet(s.train.images, rng.permutation(s.train.labels))
        val = TensorImageSet(s.val.images, (s.val.labels + 1) % len(s.classes))
        return Splits(train, val, s.test, s.classes)


def _da_trials(ctx, select: str, poisoned: bool) -> tuple[dict[int, object], object]:
    job = compose_job([*DA, f"tuning.select={select}"])
    job = replace(job, baseline=None, reference=None)
    if poisoned:
        job = replace(job, target=TargetLabelsPoisoned(job.target), run_key=job.run_key + "-p",
                      cell_key=job.cell_key + "-p")  # fmt: skip
    out = execute(job, ctx)
    trials = {int(r.data.tags["trial"]): r for r in _runs(ctx, role="trial", tuning_key=job.cell_key)}
    return trials, ctx.client.get_run(out.run_id)


@pytest.mark.slow  # ~2 min on 2 shared cores: three studies of a domain-adaptation strategy
def test_domain_adaptation_selects_on_source_validation_without_target_labels_and_the_oracle_is_named(ctx):
    clean, tuned = _da_trials(ctx, "auto", False)
    poisoned, _ = _da_trials(ctx, "auto", True)
    scores = {i: r.data.metrics[SELECTED_VAL] for i, r in clean.items()}
    assert len(scores) == 2 and scores == {i: r.data.metrics[SELECTED_VAL] for i, r in poisoned.items()}
    assert all(r.data.tags["tuning_select"] == "source_val" and "selection_oracle" not in r.data.tags
               for r in clean.values())  # fmt: skip
    assert tuned.data.tags["tuning_select"] == "source_val" and "selection_oracle" not in tuned.data.tags

    oracle, tuned_oracle = _da_trials(ctx, "oracle", False)
    assert all(r.data.tags["selection_oracle"] == "true" for r in oracle.values())
    assert tuned_oracle.data.tags["selection_oracle"] == "true"
    assert tuned_oracle.data.tags["tuning_select"] == "target_val_oracle"
    # the oracle scored on the target's validation split (2 images per class of this small target, under the budget
    # of 5), auto on the source's
    assert {r.data.metrics["data/val_examples"] for r in oracle.values()} == {20}
    assert {r.data.metrics["data/val_examples"] for r in clean.values()} != {20}


def _record(client, exp, tags, metrics, params=None) -> str:
    run = client.create_run(exp, tags={k: str(v) for k, v in tags.items()})
    for k, v in {**metrics}.items():
        client.log_metric(run.info.run_id, k, v)
    for k, v in (params or {}).items():
        client.log_param(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_the_report_shows_default_and_tuned_verdicts_side_by_side_and_trials_never_enter_cells(store, tmp_path):
    client = tracking.open_store(store)
    exp = tracking.ensure_experiment(client, "report")
    common = {"source": "synth_digits", "target": "digits", "label_budget": "5"}
    tuned_tags = {"tuned": "true", "tuning_select": "source_val", "selection_oracle": "true"}
    for seed in range(3):
        for recipe, gain, extra in (("d", -0.05, {}), ("t", 0.10, tuned_tags)):
            cost = {"tuning/trials": 2, "tuning/seconds": 9} if extra else {}
            base_key = f"base-{recipe}-{seed}"
            _record(client, exp, {**common, "source": "scratch:test_resnet", "strategy": "scratch", "seed": seed,
                                  "role": "baseline", "run_key": base_key, **extra},
                    {"test/acc": 0.5 + 0.01 * seed, **({"tuning/trials": 2, "tuning/seconds": 7} if extra else {})},
                    {"tuned.budget.lr": "0.001"} if extra else None)  # fmt: skip
            _record(client, exp, {**common, "strategy": "dann", "seed": seed, "role": "transfer",
                                  "run_key": f"{recipe}-{seed}", "baseline_key": base_key, "cell_key": recipe,
                                  "variant": "tuned=2xtpe" if extra else "", **extra},
                    {"test/acc": 0.5 + gain + 0.01 * seed, **cost},
                    {"tuned.budget.lr": "0.02", "tuned.strategy.weight": "0.5"} if extra else None)  # fmt: skip
    _record(client, exp, {**common, "strategy": "dann", "seed": 1000, "role": "trial", "run_key": "trial0",
                          "cell_key": "t", "tuning_key": "t", "trial": 0}, {"val/selected_acc": 0.9})  # fmt: skip
    runs = load_runs("report", client=client)
    assert set(runs["tags.role"]) == {"baseline", "transfer"}  # the trial is no seed of any cell
    report = build_report(runs, tmp_path, client, n_boot=200)
    assert len(report.cells) == 2 and set(report.cells["n"]) == {3}
    table = tuning_table(report.cells, runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["default verdict"] == "negative" and row["tuned verdict"] == "positive (oracle)"
    assert row["default delta"] == "-0.050" and row["tuned delta"] == "+0.100"
    assert row["chosen (transfer)"] == "lr=0.02, weight=0.5" and row["chosen (baseline)"] == "lr=0.001"
    assert row["trials (transfer/baseline)"] == "2/2" and row["tuning s (transfer/baseline)"] == "9/7"
    assert "## Tuned versus default recipe" in report.markdown and (tmp_path / "tuning.csv").is_file()
    assert "positive (oracle)" in (tmp_path / "verdicts.md").read_text()
    assert default_variant("frozen_stages=1, tuned=4xtpe") == "frozen_stages=1"  # the tuned part is anywhere


@pytest.mark.slow  # ~35 s on 2 shared cores: five short runs
def test_a_baseline_study_resumes_and_a_failed_trial_is_the_only_one_trained_again(ctx):
    """The fast version of the resume contract (a scratch cell: no source to pretrain)."""
    job = compose_job([*TINY, "strategy=scratch", "budget.min_steps=4"])
    first = execute(job, ctx)
    trials = _trials(ctx, "scratch")
    assert sorted(trials) == [0, 1] and all(not any(k.startswith("test/") for k in r.data.metrics)
                                                for r in trials.values())  # fmt: skip
    assert [trials[i].data.tags["seed"] for i in range(2)] == ["1000", "1001"]
    run = ctx.client.get_run(first.run_id)
    assert (
        run.data.tags["tuned"] == "true" and run.data.metrics["tuning/trials"] == 2 and "test/acc" in run.data.metrics
    )
    before = {r.info.run_id for r in _runs(ctx)}
    ctx.client.set_terminated(trials[1].info.run_id, "FAILED")  # the last trial failed: only it trains again
    again = execute(job, ctx)
    now = _trials(ctx, "scratch")
    assert {r.info.run_id for r in _runs(ctx)} - before == {now[1].info.run_id}
    assert now[1].data.params == trials[1].data.params and now[0].info.run_id == trials[0].info.run_id
    assert again.reused and again.run_id == first.run_id
