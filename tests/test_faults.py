"""Injected faults: bad input caught by preflight, SIGKILL mid-training, SIGTERM, a diverging run, corrupt images,
concurrent writers. Each asserts that no run is left RUNNING, that no finished result is lost or duplicated, and
that a re-run completes only what was missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, run_entry
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmark import tracking

TINY = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.batch_size=32"]
ONE_THREAD = ["trainer.threads=1"]  # the suite runs one test process per core; the parallel test keeps the default


def sweep_cmd(tmp_path: Path, store: str, args: list[str], name: str = "sweep", tiny: bool = True,
              threads: list[str] = ONE_THREAD) -> list[str]:  # fmt: skip
    return [
        sys.executable, "-m", "benchmark.run", "-m", *(TINY if tiny else []), *threads, *args,
        f"tracking.uri={store}", "tracking.experiment=faults", f"tracking.artifact_root={tmp_path / 'artifacts'}",
        f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / name}",
    ]  # fmt: skip


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("MLFLOW_TRACKING_URI", None)


def run(tmp_path, store, args, name="sweep", tiny=True, threads=ONE_THREAD) -> subprocess.CompletedProcess:
    cmd = sweep_cmd(tmp_path, store, args, name, tiny, threads)
    return run_entry(cmd, cwd=ROOT, env=ENV, timeout=600)


def all_runs(store: str) -> list:
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("faults")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def assert_sound(store: str) -> Counter:
    """Nothing RUNNING; at most one FINISHED run per run key; returns the count of FINISHED runs per role (the
    sweep's own records, its parent run and its ``role=cell`` runs, hold no result of their own)."""
    runs = all_runs(store)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("role") not in ("sweep", "cell")]
    keys = Counter(r.data.tags.get("run_key") or r.data.tags["pretrain_key"] for r in finished)
    assert max(keys.values(), default=1) == 1, f"duplicated results: {keys}"
    return Counter(r.data.tags["role"] for r in finished)


def test_preflight_reports_every_problem_and_trains_nothing(tmp_path, store):
    args = ["source=synth_digits,test_resnet_in1k", "strategy=finetune,finetun", "label_budget=5,500",
            "source.arch=test_resnett"]  # fmt: skip
    result = run(tmp_path, store, args, tiny=False)  # test_resnet_in1k has no pretraining recipe to shrink
    assert result.returncode == 2
    err = result.stderr
    assert "Preflight: 5 problem(s); nothing was trained." in err
    assert "unknown timm architecture 'test_resnett'; did you mean test_resnet" in err
    assert "Could not find 'strategy/finetun' Available options in 'strategy': aa_scratch anomaly" in err
    assert "label_budget=500 per class exceeds" in err and "choose label_budget <= 126" in err
    assert "hub weights 'test_resnet.r160_in1k' are not in the local Hugging Face cache" in err
    assert all_runs(store) == []  # not even a parent run


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _training_mid_way(store: str, tmp_path: Path, roles: tuple[str, ...] = ("transfer", "baseline")):
    """A RUNNING job run (of one of ``roles``) with a checkpoint on disk and at least 2 logged epochs."""
    client = MlflowClient(store)
    for r in all_runs(store):
        if r.info.status == "RUNNING" and r.data.tags.get("role") in roles:
            ckpt = tmp_path / "cache" / "checkpoints" / f"{r.data.tags['run_key']}.ckpt"
            if ckpt.is_file() and len(client.get_metric_history(r.info.run_id, "train/loss")) >= 2:
                return r
    return None


LONG = ["source=synth_digits", "strategy=finetune", "label_budget=5", "seed=0,1", "budget.epochs=120",
        "budget.min_steps=0", "trainer.checkpoint_every_s=0.5"]  # fmt: skip
RESUME_EPOCHS = 60
RESUME = ["source=synth_digits", "strategy=finetune", "label_budget=5", "seed=0", f"budget.epochs={RESUME_EPOCHS}",
          "budget.min_steps=0", "trainer.checkpoint_every_s=0.5"]  # fmt: skip
FINAL = ("test/acc", "test/loss", "test/f1_macro", "test/ece", "train/epochs", "train/total_steps")
CURVES = ("train/loss", "train/acc", "train/lr", "train/steps", "val/loss", "val/acc")


def _copy_store(store: str, dest: Path) -> str:
    """A consistent copy of a SQLite store (WAL content included), through SQLite's backup API."""
    import sqlite3

    src, dst = sqlite3.connect(tracking.sqlite_path(store)), sqlite3.connect(dest)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{dest}"


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_resumes_from_the_checkpoint_and_finishes_only_what_is_missing(tmp_path, store):
    """docs/how-to/resume-and-outages.md: a killed run is trained again in place from its last epoch checkpoint (same
    run id, its curves continue), FINISHED runs are reused, the dead sweep's RUNNING runs are reaped.

    The fine-tune run is killed mid-training (its baseline has FINISHED by then). After the re-run, the run must
    say where it resumed (``resumed_from_epoch``: the epoch after its checkpoint's) and end exactly where an
    uninterrupted run of the same config ends: the same learning rates, optimiser steps, curves and test metrics,
    which holds only if the weights, the optimizer moments and the schedule position all came back from the
    checkpoint (``train/lr`` and ``train/steps`` alone would not show lost AdamW moments; the test metrics do).
    The uninterrupted run trains in a copy of the store taken at the kill, where the baseline is reused and the
    killed run has no checkpoint left to resume from (the re-run deleted it when it finished).
    """
    import torch

    proc = subprocess.Popen(sweep_cmd(tmp_path, store, RESUME), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        victim = _wait_for(lambda: _training_mid_way(store, tmp_path, ("transfer",)), 400, "a run mid-training")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    key = victim.data.tags["run_key"]
    ckpt = tmp_path / "cache" / "checkpoints" / f"{key}.ckpt"
    checkpointed_epoch = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]  # the last one written
    uninterrupted = _copy_store(store, tmp_path / "uninterrupted.db")
    before = {r.info.run_id: r for r in all_runs(store)}
    assert before[victim.info.run_id].info.status == "RUNNING"  # the zombie the next invocation must clean up
    finished_before = {
        r.data.tags.get("run_key") or r.data.tags["pretrain_key"]: r.info.run_id
        for r in before.values()
        if r.info.status == "FINISHED"
    }
    assert {before[i].data.tags["role"] for i in finished_before.values()} == {"pretrain", "baseline"}

    again = run(tmp_path, store, RESUME, name="again")
    assert again.returncode == 0, again.stderr[-3000:]
    counts = assert_sound(store)
    assert counts["transfer"] == 1 and counts["baseline"] == 1 and counts["pretrain"] == 1
    after = {r.info.run_id: r for r in all_runs(store)}
    # the killed run was resumed in place, from the epoch after its last checkpoint
    resumed = after[victim.info.run_id]
    assert resumed.info.status == "FINISHED" and resumed.data.tags.get("resumed") == "true"
    assert 0 < int(resumed.data.tags["resumed_from_epoch"]) == checkpointed_epoch + 1 < RESUME_EPOCHS
    client = MlflowClient(store)
    epochs = client.get_metric_history(victim.info.run_id, "train/loss")
    assert sorted(m.step for m in epochs) == list(range(RESUME_EPOCHS))  # every epoch logged once, none repeated
    # everything that had FINISHED was reused, not recomputed
    for k, run_id in finished_before.items():
        assert after[run_id].info.status == "FINISHED"
        same_key = [r for r in after.values() if k in (r.data.tags.get("run_key"), r.data.tags.get("pretrain_key"))]
        assert [r.info.run_id for r in same_key if r.info.status == "FINISHED"] == [run_id]
    # the killed sweep's parent run was reaped too
    parents = [r for r in after.values() if r.data.tags.get("role") == "sweep"]
    assert {r.info.status for r in parents} == {"FAILED", "FINISHED"}
    stale = next(r for r in parents if r.info.status == "FAILED")
    assert stale.data.tags["failure_reason"].startswith("stale: process")

    # the same config, uninterrupted, compared value for value (CPU, same threads: bitwise equal)
    reference = run(tmp_path, uninterrupted, RESUME, name="uninterrupted")
    assert reference.returncode == 0, reference.stderr[-3000:]
    (ref,) = [r for r in all_runs(uninterrupted) if r.data.tags.get("run_key") == key and r.info.status == "FINISHED"]
    assert ref.info.run_id != victim.info.run_id and "resumed" not in ref.data.tags
    assert {k: resumed.data.metrics[k] for k in FINAL} == {k: ref.data.metrics[k] for k in FINAL}
    ref_client = MlflowClient(uninterrupted)
    for curve in CURVES:
        mine = sorted((m.step, m.value) for m in client.get_metric_history(victim.info.run_id, curve))
        theirs = sorted((m.step, m.value) for m in ref_client.get_metric_history(ref.info.run_id, curve))
        assert mine == theirs, curve


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["sigterm", "ctrl_c"]
)
def test_an_interrupt_ends_runs_in_flight_and_the_parent_as_killed(tmp_path, store, signum):
    """docs/how-to/resume-and-outages.md ("Failure isolation"): Ctrl-C or SIGTERM ends the runs in flight and the
    parent as KILLED, exit 130/143.

    The signal goes to the sweep's whole process group, as a terminal's Ctrl-C (SIGINT) or ``kill -TERM -<pgid>``
    does, while a job is training.
    """
    proc = subprocess.Popen(sweep_cmd(tmp_path, store, LONG), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        victim = _wait_for(lambda: _training_mid_way(store, tmp_path), 300, "a run mid-training")
        os.killpg(proc.pid, signum)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signum, proc.stderr.read()[-3000:]  # 143 for SIGTERM, 130 for Ctrl-C
    runs = {r.info.run_id: r for r in all_runs(store)}
    assert runs[victim.info.run_id].info.status == "KILLED"
    assert runs[victim.info.run_id].data.tags["failure_reason"] == f"SystemExit: {128 + signum}"
    parent = next(r for r in runs.values() if r.data.tags.get("role") == "sweep")
    assert parent.info.status == "KILLED"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


def test_a_diverging_run_fails_with_a_tag_and_the_sweep_goes_on(tmp_path, store):
    """README: a NaN or infinite loss stops that run as FAILED with ``diverged=true``; the sweep goes on.

    The diverging job is the middle one of three, so a sweep that stopped at the first failure would lose the third.
    """
    args = ["source=synth_digits", "strategy=finetune", "label_budget=5", "budget.optimizer=sgd",
            "budget.lr=1e-3,1e4,2e-3", "budget.warmup_fraction=0.0", "budget.epochs=1",
            "budget.min_steps=20"]  # fmt: skip
    result = run(tmp_path, store, args)
    assert result.returncode == 1, result.stderr[-3000:]
    runs = all_runs(store)
    diverged = [r for r in runs if r.data.tags.get("diverged") == "true"]
    assert diverged and all(r.info.status == "FAILED" for r in diverged)
    assert {r.data.params["budget/lr"] for r in diverged} == {"10000.0"}
    assert "Diverged: training loss became" in diverged[0].data.tags["failure_reason"]
    counts = assert_sound(store)
    assert counts["transfer"] == 2  # the healthy learning rates finished, before and after the diverging one
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("role") == "transfer"]
    assert sorted(r.data.params["budget/lr"] for r in finished) == ["0.001", "0.002"]
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failed_cells"] == "synth_digits__digits__finetune__n5__s0"  # one failed job
    assert parent.data.metrics["sweep/jobs"] == 3 and parent.data.metrics["sweep/failed"] == 1


def test_the_reaper_fails_dead_reused_and_silent_runs_and_spares_live_ones(store):
    """docs/how-to/resume-and-outages.md ("No zombies"): a RUNNING run whose owner is gone is marked FAILED with
    ``failure_reason = stale: ...``.

    Real runs in a real SQLite store, with the tags a job sets (``host``, ``pid``, ``pid_start``, ``heartbeat``):
    same host with a dead PID or a live PID whose start time differs (the PID was reused), another host whose
    heartbeat is older than ``stale_after_s``. A live owner, a fresh heartbeat from another host and a run that is
    not RUNNING are left alone.
    """
    client = MlflowClient(store)
    exp = client.create_experiment("reaper")
    host, now, stale_after_s = socket.gethostname(), time.time(), 600.0
    me = tracking.owner_tags()  # this process: alive, with its real start time
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = gone.stdout.strip()  # exited and reaped: no such process now
    assert not Path(f"/proc/{dead_pid}").exists()
    cases = {
        "dead_pid": ({"host": host, "pid": dead_pid, "pid_start": "1", "heartbeat": str(int(now))}, True),
        "reused_pid": ({**me, "pid_start": str(int(me["pid_start"]) - 1)}, True),
        "live": (me, False),
        "silent_elsewhere": ({"host": "elsewhere.example", "pid": me["pid"], "pid_start": me["pid_start"],
                              "heartbeat": str(int(now - 2 * stale_after_s))}, True),
        "beating_elsewhere": ({"host": "elsewhere.example", "pid": dead_pid, "pid_start": "1",
                               "heartbeat": str(int(now - 10))}, False),
    }  # fmt: skip
    ids = {name: client.create_run(exp, tags=tags, run_name=name).info.run_id for name, (tags, _) in cases.items()}
    done = client.create_run(exp, tags=cases["dead_pid"][0], run_name="finished_long_ago").info.run_id
    client.set_terminated(done, status="FINISHED")

    reaped = tracking.reap_stale(client, exp, stale_after_s)

    names = {run_id: name for name, run_id in ids.items()}
    assert sorted(names[i] for i in reaped) == sorted(name for name, (_, stale) in cases.items() if stale)
    for name, (_, stale) in cases.items():
        run = client.get_run(ids[name])
        assert run.info.status == ("FAILED" if stale else "RUNNING"), name
        assert ("failure_reason" in run.data.tags) == stale, name
    reason = {name: client.get_run(ids[name]).data.tags.get("failure_reason") for name in cases}
    assert reason["dead_pid"] == f"stale: process {dead_pid} on {host} is gone"
    assert reason["reused_pid"] == f"stale: process {me['pid']} on {host} is gone"
    assert reason["silent_elsewhere"].startswith("stale: no heartbeat from elsewhere.example for 1")
    assert reason["silent_elsewhere"].endswith("s (> 600 s)")
    assert client.get_run(done).info.status == "FINISHED" and "failure_reason" not in client.get_run(done).data.tags


def _tree(root: Path, corrupt: bool) -> Path:
    for c, colour in (("circle", 40), ("square", 220)):
        (root / c).mkdir(parents=True)
        for i in range(12):
            img = Image.new("L", (16, 16), colour)
            img.putpixel((i, i), 255 - colour)
            img.save(root / c / f"{i}.png")
    if corrupt:
        (root / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        (root / "square" / "notes.png").write_text("not an image either")
    return root


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_corrupt_images_are_skipped_or_rejected_by_path(tmp_path, store, policy):
    root = _tree(tmp_path / "tree", corrupt=True)
    args = ["source=synth_digits", "strategy=linear_probe", "target=image_folder", f"target.root={root}",
            f"target.bad_files={policy}", "target.val_fraction=0.25", "target.test_fraction=0.25", "budget.epochs=1",
            "budget.min_steps=4"]  # fmt: skip
    result = run(tmp_path, store, args)
    if policy == "skip":
        assert result.returncode == 0, result.stderr[-3000:]
        out = result.stdout + result.stderr  # Hydra's job log goes to the console
        assert "broken.png" in out and "skipp" in out.lower()
        assert assert_sound(store)["transfer"] == 1
    else:
        assert result.returncode == 2
        assert "Preflight" in result.stderr and "broken.png" in result.stderr and "notes.png" in result.stderr
        assert all_runs(store) == []


@pytest.mark.slow
def test_parallel_jobs_create_and_share_a_fresh_store(tmp_path):
    """docs/how-to/clusters-and-team-server.md: 4 jobs at once in worker processes on a store that does not exist
    yet. The launching process creates and migrates it (in WAL mode) before any worker opens it; no run is lost,
    no "database is locked"; the jobs ran in distinct processes at overlapping times, each with ``cores // n_jobs``
    torch threads (at least 1), as its ``threads`` tag records."""
    import sqlite3

    db = tmp_path / "fresh" / "mlflow.db"
    assert not db.exists()
    store = f"sqlite:///{db}"
    args = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=4", "source=synth_digits",
            "strategy=finetune,linear_probe", "label_budget=5", "seed=0,1", "budget.epochs=1",
            "budget.min_steps=6"]  # fmt: skip
    result = run(tmp_path, store, args, threads=[])  # the threads each job derives are what this test checks
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    client = MlflowClient(store)
    assert [e.name for e in client.search_experiments()].count("faults") == 1
    counts = assert_sound(store)
    assert counts["transfer"] == 4 and counts["baseline"] == 2 and counts["pretrain"] == 1
    runs = all_runs(store)
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/jobs"] == 4 and parent.data.metrics["sweep/failed"] == 0
    jobs = [r for r in runs if r.data.tags.get("role") in ("transfer", "baseline")]
    pids = {r.data.tags["pid"] for r in jobs}
    assert len(pids) > 1 and parent.data.tags["pid"] not in pids  # worker processes, not the launcher
    overlapping = [
        (a.info.run_name, b.info.run_name)
        for a in jobs
        for b in jobs
        if a.data.tags["pid"] < b.data.tags["pid"]
        and max(a.info.start_time, b.info.start_time) < min(a.info.end_time, b.info.end_time)
    ]
    assert overlapping, "no two jobs of different processes ran at the same time"
    cores = len(os.sched_getaffinity(0))
    assert {r.data.tags["threads"] for r in jobs} == {str(max(1, cores // 4))}


def test_a_store_file_replaced_in_the_same_process_is_opened_anew(tmp_path, _migrated_store):
    """``tracking.open_store`` hands the jobs of one process the same client. A SQLite file deleted and made again at
    the same path (a fresh store for a second try, in a notebook or a benchmark) gets a new client: the old client's
    connections would go on writing into the deleted file, and its runs would vanish with it."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    shutil.copy(_migrated_store, db)
    uri = f"sqlite:///{db}"
    first = tracking.open_store(uri)
    first.create_run(tracking.ensure_experiment(first, "first_try"))
    for leftover in tmp_path.glob("mlflow.db*"):
        leftover.unlink()
    shutil.copy(_migrated_store, db)
    second = tracking.open_store(uri)
    assert second is not first and second.get_experiment_by_name("first_try") is None
    run = second.create_run(tracking.ensure_experiment(second, "second_try")).info.run_id
    assert tracking.open_store(uri) is second  # the same file: the same client
    with sqlite3.connect(db) as con:  # the run is in the file at that path, not in a deleted one
        assert con.execute("select count(*) from runs where run_uuid = ?", (run,)).fetchone() == (1,)


def test_a_file_lock_excludes_another_process_until_its_holder_dies(tmp_path):
    """``util.file_lock`` (filelock: flock here, msvcrt on Windows): a second process waits while the first holds the
    lock, and gets it once the holder is killed (a crashed job never leaves a baseline locked)."""

    lock = tmp_path / "locks" / "baseline.lock"
    hold = ("import sys, time\nfrom pathlib import Path\nfrom benchmark.util import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        take = ("import sys\nfrom pathlib import Path\nfrom benchmark.util import file_lock\n"
                "with file_lock(Path(sys.argv[1])):\n    print('taken', flush=True)\n")  # fmt: skip
        waiter = subprocess.Popen([sys.executable, "-c", take, str(lock)], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiter.poll() is None  # still waiting on the held lock
        holder.send_signal(signal.SIGKILL)
        out, _ = waiter.communicate(timeout=60)
        assert out.strip() == "taken"
    finally:
        holder.kill()
