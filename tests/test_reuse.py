"""A sweep's jobs that are already done are recorded by the launching process, not launched through Hydra
(``benchmark.reuse``): a re-run launches only what must train, keeps every job's number, and leaves the records,
parent run and verdicts a launched job would have left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SWEEP_TINY, run_sweep
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.job import recorded_outcome

ARGS = ["source=synth_digits", "target=digits", "strategy=finetune", "label_budget=5"]


def _records(sweep_dir: Path) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_text()) for p in (sweep_dir / "transfer_bench_jobs").glob("*.json")}


def _launched(sweep_dir: Path) -> list[int]:
    """The job numbers Hydra launched: each gets a job directory with its ``.hydra`` files."""
    return sorted(int(p.parent.name) for p in sweep_dir.glob("*/.hydra"))


def _parent(client: MlflowClient, sweep_dir: Path):
    state = json.loads((sweep_dir / "transfer_bench_sweep.json").read_text())
    return client.get_run(state["parent_run_id"])


@pytest.mark.slow  # three sweeps, ~40 s: CI runs it; the default suite keeps the done-job check below
def test_a_rerun_launches_only_the_missing_jobs_and_records_the_done_ones_as_launched_jobs_would(tmp_path, store):
    first = run_sweep(tmp_path, store, [*ARGS, "seed=0,1"], "first")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _launched(tmp_path / "first") == [0, 1]
    client = MlflowClient(store)
    trained = _records(tmp_path / "first")

    # partly done: seeds 0 and 1 are recorded here, seed 2 (job 2) is launched and trains with its baseline
    second = run_sweep(tmp_path, store, [*ARGS, "seed=0,1,2"], "second")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _launched(tmp_path / "second") == [2]
    records = _records(tmp_path / "second")
    assert sorted(records) == [0, 1, 2]
    assert [records[n]["reused"] for n in (0, 1, 2)] == [True, True, False]
    for n in (0, 1):  # what the launched job recorded for the same runs, now reused
        same = ("name", "run_key", "baseline_key", "role", "cell", "status", "run_id", "baseline_run_id")
        assert {k: records[n][k] for k in same} == {k: trained[n][k] for k in same}
        assert records[n]["baseline_reused"] is True and records[n]["reference_run_id"] is None
        assert records[n]["overrides"] == trained[n]["overrides"]
        assert records[n]["phases"]["time/job_s"] >= records[n]["phases"]["time/job_lookup_s"] > 0
    assert "[1/3]" in second.stdout and "[reused] synth_digits__digits__finetune__n5__s0" in second.stdout
    parent = _parent(client, tmp_path / "second")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/trained"] == 1 and parent.data.metrics["sweep/reused"] == 2

    # all done: nothing is launched, and the sweep's records and verdicts are those of the sweep before
    third = run_sweep(tmp_path, store, [*ARGS, "seed=0,1,2"], "third")
    assert third.returncode == 0, third.stderr[-3000:]
    assert _launched(tmp_path / "third") == [] and "Launching" not in third.stdout + third.stderr
    again = _records(tmp_path / "third")
    for n in (0, 1, 2):
        assert {k: v for k, v in again[n].items() if k not in ("phases", "overrides", "reused")} == {
            k: v for k, v in records[n].items() if k not in ("phases", "overrides", "reused", "baseline_reused")
        } | {"baseline_reused": True}
    parent3 = _parent(client, tmp_path / "third")
    assert parent3.data.metrics["sweep/trained"] == 0 and parent3.data.metrics["sweep/reused"] == 3
    table = [line for line in parent.data.tags["mlflow.note.content"].splitlines() if line.startswith("| synth")]
    assert table and table == [
        line for line in parent3.data.tags["mlflow.note.content"].splitlines() if line.startswith("| synth")
    ]
    runs_json = json.loads(Path(client.download_artifacts(parent3.info.run_id, "runs.json", str(tmp_path))).read_text())
    assert [r["run_id"] for r in runs_json["jobs"]] == [again[n]["run_id"] for n in (0, 1, 2)]
    cells = client.search_runs([parent3.info.experiment_id], f"tags.role = 'cell' and tags.sweep_id = "
                               f"'{parent3.data.tags['sweep_id']}'")  # fmt: skip
    assert len(cells) == 1 and cells[0].data.tags["run_ids"].count(",") == 2


def test_a_job_is_done_only_when_every_comparison_is_recorded(tmp_path, store):
    """``recorded_outcome`` against a real store: a done job, then one whose deltas point at another baseline run
    and one flagged with a provenance mismatch, which their launched jobs would rewrite: not done."""
    result = run_sweep(tmp_path, store, [*ARGS, "seed=0"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(store)
    exp_id = client.get_experiment_by_name("e2e").experiment_id
    job = compose_job([*ARGS, "seed=0", *SWEEP_TINY, f"cache_dir={tmp_path / 'cache'}"])

    done = recorded_outcome(job, tracking.finished_runs(client, exp_id))
    assert done is not None and done.reused and done.baseline_reused
    run = client.get_run(done.run_id)
    assert done.baseline_run_id == run.data.tags["baseline_run_id"]
    assert done.deltas["delta/test/acc"] == run.data.metrics["delta/test/acc"]
    assert recorded_outcome(job.baseline, tracking.finished_runs(client, exp_id)).baseline_run_id is None
    missing = dict(tracking.finished_runs(client, exp_id))
    del missing[job.baseline_key]
    assert recorded_outcome(job, missing) is None  # its baseline would be trained

    client.set_tag(done.run_id, "baseline_run_id", "another")
    assert recorded_outcome(job, tracking.finished_runs(client, exp_id)) is None
    client.set_tag(done.run_id, "baseline_run_id", done.baseline_run_id)
    assert recorded_outcome(job, tracking.finished_runs(client, exp_id)) is not None
    client.set_tag(done.run_id, "provenance_mismatch", "version/torch: 1 (transfer) vs 2 (baseline)")
    assert recorded_outcome(job, tracking.finished_runs(client, exp_id)) is None
