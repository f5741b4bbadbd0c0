"""End to end: a real Hydra multirun in a subprocess, recorded in a real SQLite MLflow store.

Checks the parent/child links, tags, metrics, deltas, verdicts, baselines trained once and shared, pairing of
example indices within a pair, reuse on a second invocation, and failure isolation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FINISHED_SWEEP, run_sweep
from mlflow.tracking import MlflowClient


def runs_by_role(client: MlflowClient, exp_id: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in client.search_runs([exp_id], max_results=1000):
        out.setdefault(run.data.tags.get("role", "?"), []).append(run)
    return out


def test_multirun_records_pairs_deltas_verdicts_and_reuses(tmp_path, finished_sweep):
    """The shared finished sweep (conftest ``FINISHED_SWEEP``), checked on a copy of its store, then run again."""
    first, store = finished_sweep.result, finished_sweep.copy_store(tmp_path)
    assert "verdict" in first.stdout and "synth_digits" in first.stdout

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("e2e")
    roles = runs_by_role(client, exp.experiment_id)
    assert {r.info.status for rs in roles.values() for r in rs} == {"FINISHED"}
    (parent,) = roles["sweep"]
    assert len(roles["transfer"]) == 8
    assert len(roles["baseline"]) == 2  # one per seed, shared by both sources and both strategies
    assert len(roles["pretrain"]) == 2  # one per source
    for run in roles["transfer"] + roles["baseline"] + roles["pretrain"]:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
    baselines = {r.data.tags["run_key"]: r for r in roles["baseline"]}
    for run in roles["transfer"]:
        tags, metrics = run.data.tags, run.data.metrics
        for key in (
            "source",
            "target",
            "strategy",
            "seed",
            "label_budget",
            "arch",
            "run_key",
            "baseline_key",
            "git_sha",
        ):
            assert tags.get(key), key
        assert "verdict" not in tags  # shared runs are never rewritten: verdicts live on the sweep's cell runs
        base = baselines[tags["baseline_key"]]
        assert base.data.tags["seed"] == tags["seed"]
        assert metrics["delta/test/acc"] == pytest.approx(metrics["test/acc"] - base.data.metrics["test/acc"])
        assert tags["baseline_run_id"] == base.info.run_id
        assert "val/acc" in metrics and "time/fit_s" in metrics
        for score in ("transfer/logme", "transfer/leep", "transfer/nce", "transfer/h_score", "similarity/mmd"):
            assert score in metrics, score
        if tags["strategy"] == "linear_probe":  # solved: no optimiser step, a converged L-BFGS fit
            assert (
                metrics["probe/converged"] == 1.0 and metrics["train/total_steps"] == 0 and "train/loss" not in metrics
            )
        else:
            assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 1
        # pairing: the transfer run and its baseline trained on exactly the same examples
        own = json.loads(
            Path(client.download_artifacts(run.info.run_id, "data/train_indices.json", str(tmp_path))).read_text()
        )
        theirs = json.loads(
            Path(
                client.download_artifacts(base.info.run_id, "data/train_indices.json", str(tmp_path / "b"))
            ).read_text()
        )
        assert own == theirs and len(own["train_indices"]) == 5 * 10
        assert run.data.params["budget/epochs"] == base.data.params["budget/epochs"]
        assert run.data.params["source/preprocessing/image_size"] == base.data.params["source/preprocessing/image_size"]
    cells = roles["cell"]
    assert len(cells) == 4 and {c.data.tags["mlflow.parentRunId"] for c in cells} == {parent.info.run_id}
    for cell in cells:
        assert cell.data.tags["verdict"] in ("positive", "negative", "equivalent", "inconclusive")
        assert (
            cell.data.metrics["n"] == 2 and "delta" in cell.data.metrics and "4 cells" in cell.data.tags["holm_family"]
        )
    note = parent.data.tags["mlflow.note.content"]
    assert "| source" in note and "linear_probe" in note
    assert parent.data.metrics["sweep/trained"] == 8 and parent.data.metrics["sweep/failed"] == 0
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "runs.json" in artifacts
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    for name in (
        "verdicts.md",
        "verdicts.csv",
        "verdicts.tex",
        "forest.png",
        "report.md",
        "scores.csv",
        "scores_vs_delta.png",
    ):
        assert f"report/{name}" in report, name
    # one heatmap per strategy and variant (this sweep's tiny budget is a variant of the defaults)
    assert [a for a in report if a.startswith("report/heatmap_finetune__") and a.endswith(".png")], report

    # a second invocation trains nothing and reuses every FINISHED run, even across sweeps
    second = run_sweep(tmp_path, store, FINISHED_SWEEP, "second")
    assert second.returncode == 0, second.stderr[-3000:]
    roles2 = runs_by_role(client, exp.experiment_id)
    assert len(roles2["transfer"]) == 8 and len(roles2["baseline"]) == 2 and len(roles2["pretrain"]) == 2
    parent2 = next(r for r in roles2["sweep"] if r.info.run_id != parent.info.run_id)
    assert parent2.data.metrics["sweep/trained"] == 0 and parent2.data.metrics["sweep/reused"] == 8
    assert len(roles2["cell"]) == 8, "each sweep writes its own cell runs"
    verdict_table = parent2.data.tags["mlflow.note.content"].split("**Transferability")[0]
    assert verdict_table.count("| synth_digits") == 2


def test_a_job_that_does_not_compose_stops_the_sweep_before_anything_trains(tmp_path, store):
    """With preflight off, the sweeper still checks that every job of a batch composes before any of them runs
    (Hydra's ``validate_batch_is_legal``, through the compositions preflight shares: ``sweeper.check_composes``).
    The first job composes and the second names a source that does not exist: the sweep ends with Hydra's error
    naming it and the valid options, and the first job does not train."""
    result = run_sweep(tmp_path, store, ["source=synth_digits,nope", "strategy=finetune", "seed=0", "preflight=false"])
    assert result.returncode == 1, result.stderr[-3000:]
    assert "source/nope" in result.stderr and "synth_digits" in result.stderr
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100) if exp is not None else []
    assert [r.data.tags.get("role") for r in runs] in ([], ["sweep"])  # at most the sweep's parent run, ended
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert not (tmp_path / "cache" / "sources").exists()  # the first job's source was not even pretrained


@pytest.mark.slow
def test_a_parallel_sweep_pretrains_its_sources_side_by_side_before_its_jobs(tmp_path, store):
    """docs/how-to/clusters-and-team-server.md: on the joblib launcher, the sweep's sources are pretrained in the
    launcher's workers before any job starts (``benchmark.sources_first``), so no worker waits on a source's lock
    while another pretrains it. Each source is pretrained once, as a run of the sweep, before the first job's run;
    the jobs load it; the verdicts are there."""
    args = ["hydra/launcher=parallel", "source=synth_digits,shapes", "strategy=linear_probe", "label_budget=3",
            "seed=0,1"]  # fmt: skip
    result = run_sweep(tmp_path, store, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preparing 2 source(s) in the launcher's 2 workers before the jobs" in result.stdout
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("e2e")
    roles = runs_by_role(client, exp.experiment_id)
    (parent,) = roles["sweep"]
    pretrained = roles["pretrain"]
    assert sorted(r.data.tags["source"] for r in pretrained) == ["shapes", "synth_digits"]
    assert {r.data.tags["mlflow.parentRunId"] for r in pretrained} == {parent.info.run_id}
    jobs = roles["transfer"] + roles["baseline"]
    assert len(roles["transfer"]) == 4 and len(roles["baseline"]) == 2
    assert max(r.info.end_time for r in pretrained) <= min(r.info.start_time for r in jobs)
    assert all(r.info.status == "FINISHED" for r in pretrained + jobs)


def test_a_failing_job_is_isolated_and_recorded(tmp_path, store):
    """docs/how-to/resume-and-outages.md ("Failure isolation"): a failed job leaves a FAILED run with
    ``traceback.txt`` and ``failure_reason``;
    the other jobs go on; the parent ends FAILED with ``failed_cells`` and the command exits 1.

    1000 examples per class do not exist: that job, the middle one of three, fails; the jobs before and after it
    finish (a sweep that stopped at the first failure would lose the third). Preflight would reject the sweep before
    training (tests/test_faults.py); here it is off, to exercise a failure inside a running sweep.
    """
    args = ["source=synth_digits", "strategy=finetune", "label_budget=3,1000,5", "seed=0", "preflight=false"]
    result = run_sweep(tmp_path, store, args)
    assert result.returncode == 1, result.stderr[-3000:]
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    failed = [r for r in runs if r.info.status == "FAILED"]
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("role") == "transfer"]
    assert sorted(r.data.tags["label_budget"] for r in finished) == ["3", "5"]
    parent = next(r for r in failed if r.data.tags.get("role") == "sweep")
    assert parent.data.tags["failed_cells"] == "synth_digits__digits__finetune__n1000__s0"
    assert parent.data.metrics["sweep/jobs"] == 3 and parent.data.metrics["sweep/failed"] == 1
    (job,) = [r for r in failed if r.data.tags.get("role") != "sweep"]
    assert job.data.tags["label_budget"] == "1000"
    assert "label_budget=1000" in job.data.tags["failure_reason"]
    trace = Path(client.download_artifacts(job.info.run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "ValueError" in trace
