"""MLflow lineage: context tags and versions on every run kind, dataset inputs, logged models that reload and score
their run's test accuracy, system metrics; and feedback on long work (progress lines, Lightning's bar)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.pytorch
import pytest
import torch
from conftest import compose
from mlflow.utils import mlflow_tags

from benchmark import provenance, sweep, tracking
from benchmark.compose import build_lineage, compose_job
from benchmark.job import execute
from benchmark.lifecycle import tracked_run
from benchmark.lineage import Lineage, dataset_input
from benchmark.spec import Context
from benchmark.splits import load_splits
from benchmark.train import TrainerSettings

TINY = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=3",
        "budget.min_steps=6", "budget.batch_size=32", "label_budget=5", "scores=false"]  # fmt: skip
CONTEXT_TAGS = (mlflow_tags.MLFLOW_USER, mlflow_tags.MLFLOW_SOURCE_NAME, mlflow_tags.MLFLOW_SOURCE_TYPE)


@pytest.fixture
def global_uri(store, monkeypatch):
    """``mlflow.pytorch.load_model`` resolves ``runs:/`` through the process-wide URI: set it for the test only."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return store


def _accuracy(model: torch.nn.Module, job) -> float:
    """Accuracy of a reloaded model on the job's target test split, preprocessed as the run's source does."""
    splits = load_splits(job.target_id, job.target, job.target_config)
    x = job.source.preprocessing.apply(splits.test)
    with torch.inference_mode():
        pred = torch.cat([model(torch.stack([x[i][0] for i in range(j, min(j + 256, len(x)))])).argmax(-1)
                          for j in range(0, len(x), 256)])  # fmt: skip
    return float((pred.numpy() == splits.test.labels).mean())


def test_logged_models_reload_with_their_runs_test_accuracy_and_runs_carry_their_lineage(global_uri, tmp_path):
    client = tracking.open_store(global_uri)
    ctx = Context(client, tracking.ensure_experiment(client, "lineage"), tmp_path / "cache",
                  lineage=Lineage(log_models="all", register_models=True))  # fmt: skip
    jobs = {s: compose_job([*TINY, "source=synth_digits", "target=digits", f"strategy={s}", "selection=best_val"])
            for s in ("finetune", "linear_probe")}  # fmt: skip
    outcomes = {s: execute(job, ctx) for s, job in jobs.items()}

    runs = {s: client.get_run(o.run_id) for s, o in outcomes.items()}
    runs["scratch"] = client.get_run(outcomes["finetune"].baseline_run_id)
    (pretrain,) = tracking.find_runs(client, ctx.experiment_id, "role", "pretrain")
    for name, run in {**runs, "pretrain": pretrain}.items():
        tags = run.data.tags
        for key in (*CONTEXT_TAGS, *provenance.PROVENANCE_TAGS):
            assert tags.get(key), (name, key)
        assert tags[mlflow_tags.MLFLOW_GIT_COMMIT] == provenance.git_commit()
        assert tags["git_sha"].split("-")[0] == provenance.git_commit()[:12]
        # the run that logged a model is untouched by it: FINISHED once, with the metrics training gave it
        assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
        assert [o.step for o in run.outputs.model_outputs] == [0], name

    # every model reloads from the run's URI and scores exactly the run's test accuracy: the tested weights
    job_of = {"finetune": jobs["finetune"], "linear_probe": jobs["linear_probe"], "scratch": jobs["finetune"].baseline}
    for name, run in runs.items():
        model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
        assert _accuracy(model, job_of[name]) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6), name
        (output,) = run.outputs.model_outputs
        logged = client.get_logged_model(output.model_id)
        assert logged.source_run_id == run.info.run_id and logged.status.to_proto() == 2  # READY
        assert logged.tags["role"] == run.data.tags["role"] and logged.tags["run_key"] == run.data.tags["run_key"]
        info = mlflow.models.get_model_info(f"models:/{output.model_id}")
        assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 3, 32, 32)
        assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 10)
        assert info.saved_input_example_info is not None
        files = Path(mlflow.artifacts.download_artifacts(f"models:/{output.model_id}", dst_path=str(tmp_path / name)))
        saved = {f.relative_to(files).as_posix() for f in files.rglob("*") if f.is_file()}
        assert "data/model.pt2" in saved and not any(f.endswith((".pth", ".pkl")) for f in saved), saved  # no pickle
    # registered under the cell's name, one version per run
    version = client.search_model_versions(f"name='{jobs['finetune'].name.removesuffix('__s0')}'")[0]
    assert version.run_id == runs["finetune"].info.run_id
    # the harness-pretrained source is a model too, with the source dataset's classes
    source = mlflow.pytorch.load_model(f"runs:/{pretrain.info.run_id}/model")
    assert source(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

    # dataset inputs: the target on every run (one MLflow dataset, same digest), the source's on the pretrain run
    def datasets(run):
        return {
            (d.dataset.name, d.tags[0].value): d.dataset for d in client.get_run(run.info.run_id).inputs.dataset_inputs
        }

    target = {name: datasets(run)[("digits", "target")] for name, run in runs.items()}
    assert len({d.digest for d in target.values()}) == 1
    profile = json.loads(target["finetune"].profile)
    splits = load_splits("digits", jobs["finetune"].target, jobs["finetune"].target_config)
    assert (profile["train"], profile["val"], profile["test"]) == (len(splits.train), len(splits.val), len(splits.test))
    assert profile["num_classes"] == 10
    assert set(datasets(pretrain)) == {("synth_digits", "source")}


def test_a_changed_target_config_is_another_dataset():
    job = compose_job(["target=digits"])
    splits = load_splits(job.target_id, job.target, job.target_config)
    a = dataset_input("digits", job.target_config, splits, "target").dataset
    b = dataset_input("digits", {**job.target_config, "val_fraction": 0.3}, splits, "target").dataset
    assert a.digest != b.digest and a.digest == dataset_input("digits", job.target_config, splits, "x").dataset.digest


def test_sweep_and_cell_runs_get_context_tags_and_versions(store, tmp_path):
    state = sweep.start(store, "lineage", tmp_path / "art", tmp_path / "sweep", ["seed=0,1"], provenance.git_sha(),
                        "test/acc", 0.05, 0.0, jobs=2)  # fmt: skip
    sweep.ACTIVE = None
    client = tracking.open_store(store)
    cell = tracking.create_run(client, state.experiment_id, "cell", {"role": "cell"}, state.parent_run_id)
    for run_id in (state.parent_run_id, cell):
        tags = client.get_run(run_id).data.tags
        for key in (*CONTEXT_TAGS, *provenance.PROVENANCE_TAGS):
            assert tags.get(key), key
        assert tags[mlflow_tags.MLFLOW_SOURCE_TYPE] == "LOCAL"


def test_lineage_settings_reject_bad_values_before_training():
    with pytest.raises(ValueError, match=r"log_models='best'.*none, transfer, all"):
        build_lineage(compose(["tracking.log_models=best"]).tracking)
    with pytest.raises(ValueError, match="register_models=true"):
        build_lineage(compose(["tracking.register_models=true"]).tracking)
    assert build_lineage(compose([]).tracking) == Lineage()  # the default: nothing but datasets, as before
    assert build_lineage(compose(["tracking.log_models=transfer"]).tracking).logs_model("pretrain")
    assert not build_lineage(compose(["tracking.log_models=transfer"]).tracking).logs_model("baseline")


def test_system_metrics_are_sampled_while_a_run_is_open(store, tmp_path):
    pytest.importorskip("psutil")  # a dependency (pyproject.toml): MLflow samples the machine with it
    client = tracking.open_store(store)
    ctx = Context(client, tracking.ensure_experiment(client, "system"), tmp_path / "cache",
                  lineage=Lineage(system_metrics=True, system_metrics_interval_s=0.2))  # fmt: skip
    job = compose_job(["strategy=scratch"])
    with tracked_run(job, ctx) as run:
        time.sleep(1.5)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in got.data.metrics
    assert len(client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")) >= 2


def test_progress_line_counts_jobs_and_estimates_the_rest(tmp_path):
    rule = ("test/acc", 0.05, 0.01, False)  # metric, alpha, margin, at_cap
    state = sweep.SweepState("sqlite:///x", "e", "1", "p", "s", str(tmp_path), *rule, jobs=4, started=1000.0)
    for n in range(2):
        sweep.write_record(sweep.record_path(state, n), {"status": "ok"})
    assert sweep.progress(state, 1, now=1060.0) == "[2/4] 1:00 elapsed, ETA 1:00"
    sweep.write_record(sweep.record_path(state, 2), {"status": "failed"})
    assert sweep.progress(state, 2, now=1090.0) == "[3/4] 1:30 elapsed, ETA 0:30"
    assert sweep.progress(sweep.SweepState("u", "e", "1", "p", "s", str(tmp_path), *rule), 0) == "[1/?]"


def test_a_sweep_prints_k_of_n_with_an_eta(finished_sweep):
    """The shared finished sweep (conftest ``FINISHED_SWEEP``, 8 jobs, run with ``CI=true``)."""
    out = finished_sweep.result
    lines = [ln for ln in out.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", ln)]
    assert [ln.split()[0] for ln in lines] == [f"[{k}/8]" for k in range(1, 9)], out.stdout
    assert "elapsed, ETA" in lines[0] and "test/acc=" in lines[0]
    assert "it/s" not in out.stderr  # no progress bar in CI


def test_progress_bar_is_a_choice_that_changes_no_run_key(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert not TrainerSettings().shows_progress_bar  # auto: never in CI
    assert TrainerSettings(progress_bar=True).shows_progress_bar
    with pytest.raises(ValueError, match="progress_bar='sometimes'; choose one of: auto, true, false"):
        TrainerSettings(progress_bar="sometimes")
    keys = {compose_job([f"trainer.progress_bar={v}"]).run_key for v in ("auto", "true", "false")}
    assert len(keys) == 1
