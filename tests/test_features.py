"""Frozen features: computed once per pair, equivalent to re-running the backbone; scores logged and ranked."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

import benchmark.features as features
from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.job import ensure_run, execute
from benchmark.spec import Context
from benchmark.strategies.base import TransferStrategy
from benchmark.train import Budget, TrainerSettings, fit_and_test
from benchmark.util import atomic_path

TINY = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=2",
        "budget.min_steps=10"]  # fmt: skip


@pytest.fixture
def ctx(store, tmp_path):
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "features"), tmp_path / "cache")


@pytest.fixture
def extract_calls(monkeypatch):
    """Count backbone passes over a dataset (a spy around the real function, not a mock)."""
    calls = []
    real = features.extract

    def spy(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract", spy)
    monkeypatch.setattr("benchmark.scoring.extract", spy)
    features._MEMO.clear()
    return calls


def test_cached_linear_probe_equals_the_backbone_linear_probe(ctx, extract_calls):
    runs = {}
    for cached in (True, False):
        job = compose_job(
            [
                *TINY,
                "strategy=linear_probe",
                "strategy.probe.head=sgd",
                "label_budget=10",
                f"trainer.feature_cache={cached}",
            ]
        )  # a head the budget trains, on features or images
        # feature_cache is not part of the run key (same result by construction): record each in its own experiment
        own = Context(ctx.client, tracking.ensure_experiment(ctx.client, f"cached_{cached}"), ctx.cache_dir)
        runs[cached] = ensure_run(job, own).metrics
    assert runs[True]["features/cached"] == 1.0 and "features/cached" not in runs[False]
    assert runs[True]["test/acc"] == pytest.approx(runs[False]["test/acc"], abs=0.005)
    assert runs[True]["test/loss"] == pytest.approx(runs[False]["test/loss"], rel=1e-3)
    assert len(extract_calls) == 3  # train, val and test splits, once


@pytest.mark.parametrize("selection", ["last", "best_val"])
def test_in_memory_head_loop_equals_the_lightning_fit(ctx, selection):
    """A head on in-memory features trains in a plain loop (``fit_in_memory``); Lightning must give the same run."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4, generator=g)

    def split(n: int) -> TensorDataset:
        x = torch.randn(n, 16, generator=g)
        return TensorDataset(x, (x @ w + 2 * torch.randn(n, 4, generator=g)).argmax(1))

    train, val, test = split(300), split(100), split(100)
    out, logged = {}, {}
    for loop, callbacks in (("plain", None), ("lightning", [pl.Callback()])):  # any extra callback needs Lightning
        torch.manual_seed(0)
        run_id = tracking.create_run(ctx.client, ctx.experiment_id, loop, {}, None)
        out[loop] = fit_and_test(nn.Linear(16, 4), TransferStrategy(), train, val, test, 4, Budget(epochs=24),
                                 TrainerSettings(), 0, selection, ctx.client, run_id, callbacks)  # fmt: skip
        logged[loop] = {
            key: [(m.step, m.value) for m in sorted(ctx.client.get_metric_history(run_id, key), key=lambda m: m.step)]
            for key in ("train/loss", "train/acc", "train/lr", "train/steps", "val/acc", "val/loss", "val/ece")
        }
    plain, lightning = out["plain"], out["lightning"]
    untimed = lambda d: {k: v for k, v in d.items() if not k.startswith("time/")}  # noqa: E731
    assert untimed(plain.metrics) == untimed(lightning.metrics)
    assert [untimed(r) for r in plain.history] == [untimed(r) for r in lightning.history]
    assert plain.selected_epoch == lightning.selected_epoch and plain.epochs == 24
    assert logged["plain"] == logged["lightning"] and len(logged["plain"]["train/loss"]) == 24
    assert [s for s, _ in logged["plain"]["val/acc"]] == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]


def test_the_test_split_scores_the_same_without_lightnings_test_loop(monkeypatch):
    """An in-memory test split of a model that trains through Lightning is scored by ``_evaluate`` (fp32 on the CPU);
    any other dataset goes through Lightning's test loop (a ``Subset`` here, the same images): identical scores."""
    g = torch.Generator().manual_seed(1)

    def split(n: int) -> TensorDataset:
        x = torch.randn(n, 3, 8, 8, generator=g)
        return TensorDataset(x, (x[:, 0].mean((1, 2)) > 0).long() + (x[:, 1].mean((1, 2)) > 0).long())

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 3))  # fmt: skip

    train, val, test = split(96), split(40), split(1100)  # 3 test batches of at most 512, the last one short
    calls, original = [], pl.Trainer.test
    monkeypatch.setattr(pl.Trainer, "test", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = {}
    for name, data in (("direct", test), ("lightning", Subset(test, range(len(test))))):
        result = fit_and_test(net(), TransferStrategy(), train, val, data, 3, Budget(epochs=3), TrainerSettings(), 0)
        out[name] = {k: v for k, v in result.metrics.items() if k.startswith("test/")}
        assert len(calls) == (name == "lightning")
    assert out["direct"] == out["lightning"]
    assert {"test/acc", "test/loss", "test/ece", "test/f1_macro"} <= set(out["direct"])


def test_features_and_scores_are_computed_once_per_pair(ctx, extract_calls):
    for seed in (0, 1):
        for budget in (5, 10):
            job = compose_job([*TINY, "strategy=linear_probe", f"label_budget={budget}", f"seed={seed}"])
            execute(job, ctx)
    # linear-probe features: train/val/test once; scores: target train with the source head + source images, once
    assert len(extract_calls) == 3 + 2
    features._MEMO.clear()  # a new process: the on-disk cache serves it
    execute(compose_job([*TINY, "strategy=linear_probe", "label_budget=5", "seed=2"]), ctx)
    assert len(extract_calls) == 5
    key = compose_job([*TINY, "strategy=linear_probe", "label_budget=5", "seed=2"]).run_key
    run = tracking.find_finished(ctx.client, ctx.experiment_id, key)
    for key in ("transfer/logme", "transfer/leep", "transfer/nce", "transfer/h_score", "similarity/mmd",
                "similarity/frechet", "similarity/proxy_a_distance"):  # fmt: skip
        assert key in run.data.metrics, key


@pytest.mark.slow  # ranks two sources through the CLI, ~19 s: CI runs it
def test_rank_orders_sources_and_logs_a_run(store, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from benchmark.rank import main

    # the sources' real pretraining recipes (a few seconds each): a barely trained source ranks at random
    code = main(["--target", "digits", "--sources", "synth_digits,shapes,test_resnet_in1k", "--tracking-uri", store,
                 "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert lines[1].split("|")[2].strip() == "synth_digits"  # the sim-to-real source ranks first on LogME
    assert "test_resnet_in1k" in out and "not in the local Hugging Face cache" in out  # listed, not fatal
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("rank").experiment_id])[0]
    assert run.data.tags["role"] == "rank" and "synth_digits/transfer/logme" in run.data.metrics


def test_two_writers_of_one_cache_file_both_succeed(tmp_path):
    """Two jobs of a parallel sweep extract the same features and write the same cache file at once (a CI failure:
    with one shared temporary name, the second rename found its file already moved). Each writer now has its own
    temporary file: both succeed, the file is whole, nothing is left behind; a failed writer leaves no file."""
    path = tmp_path / "features" / "key.pt"
    with atomic_path(path) as outer:
        torch.save({"writer": "first"}, outer)
        with atomic_path(path) as inner:  # the second job writes and renames while the first is between the two
            torch.save({"writer": "second"}, inner)
    assert torch.load(path, weights_only=True) == {"writer": "first"}  # the last to finish wins; both are whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.pt"]
    broken = tmp_path / "broken.json"
    with pytest.raises(OSError), atomic_path(broken) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert list(tmp_path.glob("*broken*")) == []
