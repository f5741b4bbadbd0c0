"""Domain adaptation, self-supervised and unsupervised transfer through the real job path (Lightning, MLflow).

The loss functions themselves are tested in ``tests/test_losses.py``; here: the strategies never read target
labels (poisoned labels change nothing, while they do change a strategy that reads them), the reference and
baseline wiring reaches MLflow, SimCLR lowers its loss on bundled data, and the unsupervised scores equal
scikit-learn's on the same features.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

from benchmark import splits as split_memo
from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.data import Preprocessing, Splits, TensorImageSet
from benchmark.job import execute
from benchmark.models import build_model
from benchmark.spec import Context
from benchmark.targets.base import Target

TINY = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=1",
        "budget.min_steps=8", "budget.batch_size=32", "label_budget=5", "scores=false"]  # fmt: skip
SMALL_TARGET = ["target=synth_digits", "target.n_per_class=16", "target.seed=7"]
"""Adaptation trains on every target training image: a small rendered target (other glyphs than the source's)
keeps these tests to seconds."""


@pytest.fixture
def ctx(store, tmp_path):
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "adaptation"), tmp_path / "cache")


class Poisoned(Target):
    """The wrapped target with its training labels replaced by a fixed random permutation (val/test intact)."""

    def __init__(self, inner: Target):
        self.inner = inner

    def load(self) -> Splits:
        s = self.inner.load()
        labels = np.random.default_rng(0).permutation(s.train.labels)
        train = TensorImageSet(s.train.images, labels)
        return Splits(train, s.val, s.test, s.classes)


def _run(job, ctx, poisoned: bool):
    if poisoned:
        job = replace(job, target=Poisoned(job.target), target_config={**job.target_config, "poisoned": True},
                      run_key=job.run_key + "-p", baseline=None, reference=None)  # fmt: skip
    else:
        job = replace(job, baseline=None, reference=None)
    out = execute(job, ctx)
    return ctx.client.get_run(out.run_id).data.metrics


@pytest.mark.parametrize("strategy", ["dann", "coral", "mmd", "source_only"])
def test_adaptation_never_reads_target_labels(ctx, strategy):
    job = compose_job([*TINY, "source=synth_digits", *SMALL_TARGET, f"strategy={strategy}"])
    clean, poisoned = _run(job, ctx, False), _run(job, ctx, True)
    for key in ("test/acc", "test/loss", "train/loss", "val/acc"):
        assert clean[key] == poisoned[key], (key, clean[key], poisoned[key])


def test_poisoned_labels_do_change_a_strategy_that_reads_them(ctx):
    """The control: the poisoning above is strong enough to show up when labels are read."""
    job = compose_job([*TINY, "source=synth_digits", *SMALL_TARGET, "strategy=finetune", "label_budget=null"])
    clean, poisoned = _run(job, ctx, False), _run(job, ctx, True)
    assert clean["train/loss"] != poisoned["train/loss"] and clean["test/loss"] != poisoned["test/loss"]


def test_adaptation_is_paired_with_scratch_and_source_only(ctx, tmp_path):
    job = compose_job([*TINY, "source=synth_digits", *SMALL_TARGET, "strategy=dann", "seed=1"])
    assert job.reference.strategy_id == "source_only" and job.baseline.strategy_id == "scratch"
    assert job.reference.baseline_key == job.baseline_key  # source_only and dann share the scratch baseline
    out = execute(job, ctx)
    run = ctx.client.get_run(out.run_id)
    ref = ctx.client.get_run(run.data.tags["reference_run_id"])
    base = ctx.client.get_run(run.data.tags["baseline_run_id"])
    assert ref.data.tags["strategy"] == "source_only" and base.data.tags["strategy"] == "scratch"
    m = run.data.metrics
    assert m["reference_delta/test/acc"] == pytest.approx(m["test/acc"] - ref.data.metrics["test/acc"])
    assert m["delta/test/acc"] == pytest.approx(m["test/acc"] - base.data.metrics["test/acc"])
    assert {"train/align_loss", "train/task_loss", "train/grl_lambda"} <= set(m)
    assert ref.data.metrics["delta/test/acc"] == pytest.approx(
        ref.data.metrics["test/acc"] - base.data.metrics["test/acc"]
    )
    # the unlabelled target images, never the label subset, are what the adaptation trained on
    local = ctx.client.download_artifacts(out.run_id, "data/train_indices.json", str(tmp_path))
    indices = json.loads(Path(local).read_text())
    assert "train_indices" not in indices and len(indices["unlabelled_target_indices"]) == m["data/train_examples"]


def test_adaptation_preflight_names_the_problem():
    from benchmark.recipe import data_problems

    job = compose_job([*TINY[2:], "source=test_resnet_in1k", "target=digits", "strategy=coral"])
    (problem,) = data_problems(job)
    assert "has hub weights (no dataset)" in problem and "source=synth_digits" in problem
    job = compose_job([*TINY, "source=synth_letters", "target=digits", "strategy=mmd"])
    problems = data_problems(job)
    assert problems and "same classes" in problems[0] and "'A'" in problems[0]


SSL_TARGET = ["target=synth_digits", "target.n_per_class=30", "target.seed=7"]
SSL = ["strategy.epochs=10", "strategy.batch_size=64", "strategy.lr=3e-3"]


def test_simclr_loss_decreases_on_bundled_digits(ctx):
    job = compose_job([*TINY, "source=synth_digits", *SSL_TARGET, "strategy=ssl_probe", *SSL])
    out = execute(replace(job, baseline=None), ctx)
    m = ctx.client.get_run(out.run_id).data.metrics
    assert m["ssl/epochs"] == 10
    assert m["ssl/loss_last_epoch"] < 0.9 * m["ssl/loss_first_epoch"]
    # the probe of the same seed reuses the pretraining and the features (no second SimCLR run)
    job2 = compose_job([*TINY, "source=synth_digits", *SSL_TARGET, "strategy=ssl_finetune", *SSL])
    out2 = execute(replace(job2, baseline=None), ctx)
    m2 = ctx.client.get_run(out2.run_id).data.metrics
    assert (
        m2["ssl/loss_last_epoch"] == m["ssl/loss_last_epoch"] and m2["time/ssl_pretrain_s"] == m["time/ssl_pretrain_s"]
    )
    assert len(list((ctx.cache_dir / "ssl").glob("*.safetensors"))) == 1


def _sklearn_cluster(feats: np.ndarray, labels: np.ndarray, k: int, seed: int) -> tuple[float, float]:
    assign = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(feats))
    return normalized_mutual_info_score(labels, assign), adjusted_rand_score(labels, assign)


def test_cluster_scores_equal_sklearn_on_the_same_features():
    from benchmark.features import extract
    from benchmark.strategies.cluster import Cluster
    from benchmark.targets.digits import Digits

    splits = Digits().load()
    prep = Preprocessing(32)
    torch.manual_seed(0)
    model = build_model("test_resnet", splits.num_classes, prep)
    got = Cluster().evaluate(model, splits, np.arange(len(splits.train)), prep, seed=3)
    feats = extract(model, prep.apply(splits.test))[0].numpy()
    nmi, ari = _sklearn_cluster(feats, splits.test.labels, splits.num_classes, 3)
    assert got["test/nmi"] == pytest.approx(nmi) and got["test/ari"] == pytest.approx(ari)
    pixels = prep.apply(splits.test).tensors[0].flatten(1).numpy()
    nmi_px, ari_px = _sklearn_cluster(pixels, splits.test.labels, splits.num_classes, 3)
    assert got["test/nmi_pixels"] == pytest.approx(nmi_px) and got["test/ari_pixels"] == pytest.approx(ari_px)


def test_unsupervised_strategies_are_compared_with_the_random_network(ctx):
    split_memo.clear()
    for strategy, metric in (("cluster", "test/nmi"), ("anomaly", "test/auroc")):
        job = compose_job([*TINY, "source=synth_digits", "target=digits", f"strategy={strategy}"])
        assert job.baseline.strategy_id == f"{strategy}_random"
        out = execute(job, ctx)
        run = ctx.client.get_run(out.run_id)
        base = ctx.client.get_run(run.data.tags["baseline_run_id"])
        assert run.data.tags["metric"] == metric and base.data.tags["role"] == "baseline"
        m = run.data.metrics
        assert m[f"delta/{metric}"] == pytest.approx(m[metric] - base.data.metrics[metric])
        assert "test/acc" not in m and f"{metric}_pixels" in m
        assert base.data.tags["weights"] == "none" and base.data.metrics["weights/loaded_tensors"] == 0


def test_anomaly_auroc_equals_sklearn_for_one_held_out_class():
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from benchmark.strategies.anomaly import Anomaly

    g = np.random.default_rng(0)
    images = torch.from_numpy(g.random((60, 1, 8, 8), dtype=np.float32))
    labels = np.repeat([0, 1, 2], 20)
    images[labels == 2] += 1.0  # class 2 is brighter: an easy anomaly in pixel space
    s = TensorImageSet(images, labels)
    splits = Splits(s, s, s, ["a", "b", "c"])
    prep = Preprocessing(8, in_chans=1, mean=(0.5,), std=(0.5,))
    model = build_model("test_resnet", 3, Preprocessing(8, in_chans=1, mean=(0.5,), std=(0.5,)))
    got = Anomaly(anomaly_classes=[2], k=3).evaluate(model, splits, np.arange(60), prep, seed=0)
    x = prep.apply(s).tensors[0].flatten(1).numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d, _ = NearestNeighbors(n_neighbors=3).fit(x[labels != 2]).kneighbors(x)
    assert got["test/auroc_pixels"] == pytest.approx(roc_auc_score(labels == 2, d.mean(1)))
    assert got["test/auroc_pixels"] > 0.9


@pytest.mark.slow  # a whole sweep of the new strategies, ~24 s: CI runs it
def test_new_strategies_sweep_next_to_the_core_ones(tmp_path, store):
    """One CLI multirun: fine-tune, domain adaptation (with its reference) and clustering, each with its verdict."""
    from conftest import run_sweep

    args = ["source=synth_digits", *SMALL_TARGET, "strategy=finetune,dann,cluster", "label_budget=5", "seed=0,1",
            "scores=false"]  # fmt: skip
    out = run_sweep(tmp_path, store, args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Adaptation versus its reference" in out.stdout and "| metric " in out.stdout
    client = tracking.open_store(store)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    by, cells = {}, {}
    for r in runs:
        if r.data.tags.get("role") == "cell":  # one per cell and comparison, holding the verdict
            cells.setdefault((r.data.tags["strategy"], r.data.tags["comparison"]), []).append(r)
        else:
            by.setdefault(r.data.tags.get("strategy"), []).append(r)
    assert {"finetune", "dann", "source_only", "cluster", "cluster_random", "scratch"} <= set(by)
    assert all(r.info.status == "FINISHED" for r in runs)
    for r in by["dann"]:
        assert "reference_delta/test/acc" in r.data.metrics
    for r in by["cluster"]:
        assert "delta/test/nmi" in r.data.metrics
    assert cells[("dann", "reference")][0].data.tags["verdict"] and cells[("dann", "baseline")][0].data.tags["verdict"]
    (cluster,) = cells[("cluster", "baseline")]
    assert cluster.data.tags["verdict"] and cluster.data.tags["metric"] == "test/nmi"
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert "source_only" in parent.data.tags["mlflow.note.content"]
