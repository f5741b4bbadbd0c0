"""A tracking server outage longer than the client's retries (docs/how-to/clusters-and-team-server.md ("Outages")):
the server is killed while a sweep
trains, kept down past ``tracking.outage_s``, and restarted; the same command run again completes only what is
missing. And a sweep started while the server is down says so before training anything."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port, run_entry, stop, wait_healthy
from mlflow.tracking import MlflowClient
from test_team import ENV, TINY

from benchmark import tracking

OUTAGE_S = 20  # tracking.outage_s in the test: MLflow's client then gives up after 24 s (3 retries, factor 4)


def test_the_retry_plan_bounds_the_wait_and_finds_a_server_back_early():
    for outage in (2, 5, 20, 60, 300, 600, 1000):
        retries, factor, total = tracking.retry_plan(outage)
        assert outage <= total <= 1.25 * outage, (outage, retries, factor)
        assert 1 <= factor <= tracking.MAX_BACKOFF_FACTOR and 2 <= retries <= tracking.MAX_RETRIES
    assert tracking.retry_plan(OUTAGE_S) == (3, 4, 24.0)
    assert tracking.retry_plan(300)[2] == 366.0  # the default bound: 9 retries 0, 2, 4 ... 120, 120 s apart
    assert tracking.backoff_s(7, 2) == 244.0  # MLflow's own default, which tracking.outage_s=null keeps
    with pytest.raises(ValueError, match=r"tracking.outage_s=5000.*2 <= outage_s <= 1080"):
        tracking.retry_plan(5000)
    with pytest.raises(ValueError, match=r"tracking.outage_s=0.5 is out of range"):
        tracking.retry_plan(0.5)


def test_a_dead_server_is_named_and_not_waited_for_twice(monkeypatch):
    """``check_server`` names the URI and what to do; a URI found down is probed once by ``open_store`` (no second
    wait of the whole bound) and forgotten when it answers again."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setattr(tracking, "_DOWN", set())
    t0 = time.monotonic()
    with pytest.raises(tracking.ServerUnreachable, match=rf"{url} is not reachable .*scripts/mlflow_server.sh"):
        tracking.check_server(url, wait_s=2.0)
    assert 2.0 <= time.monotonic() - t0 < 10 and url in tracking._DOWN
    t0 = time.monotonic()
    with pytest.raises(tracking.ServerUnreachable):
        tracking.open_store(url)
    assert time.monotonic() - t0 < 5  # MLflow's retries (minutes) are not paid again
    tracking.check_server("sqlite:////nowhere/mlflow.db")  # a database URI has no server to check


class Server:
    """``mlflow server`` over one SQLite file on one port, killed (SIGKILL: a crash) and started again."""

    def __init__(self, tmp_path: Path, db: Path):
        self.tmp_path, self.db, self.port = tmp_path, db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.db}", "--artifacts-destination",
               str(self.tmp_path / "served"), "--serve-artifacts", "--workers", "1"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)  # fmt: skip
        wait_healthy(self.proc, self.url, timeout_s=120)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def sweep_cmd(tmp_path: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.run", "-m", *TINY, "seed=0,1,2", "tracking=server",
            f"tracking.uri={url}", f"tracking.outage_s={OUTAGE_S}", "tracking.experiment=team",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip


def running_run_of_a_later_job(client: MlflowClient) -> str | None:
    """A RUNNING run of seed 1 or 2 (the second or third job, or the baseline it trains first), if any."""
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'"):
            if run.data.tags.get("seed") in ("1", "2"):
                return run.info.run_id
    return None


@pytest.mark.slow
def test_outage_longer_than_the_retries_then_the_rerun_completes_only_what_is_missing(tmp_path, _migrated_store):
    db = tmp_path / "server.db"
    shutil.copy(_migrated_store, db)
    server = Server(tmp_path, db)
    server.start()
    try:
        client = MlflowClient(server.url)
        first = subprocess.Popen(sweep_cmd(tmp_path, server.url), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        caught = None
        deadline = time.monotonic() + 300
        while caught is None and first.poll() is None and time.monotonic() < deadline:
            caught = running_run_of_a_later_job(client)
            time.sleep(0.05)
        assert caught is not None, "no later job was seen training: " + (first.communicate()[0] or "")[-3000:]
        exp_id = client.get_experiment_by_name("team").experiment_id
        finished_before = {
            r.info.run_id: r.data.tags["run_key"]
            for r in client.search_runs([exp_id])
            if r.info.status == "FINISHED" and r.data.tags["role"] in ("baseline", "transfer")
        }
        server.kill()
        killed_at = time.monotonic()
        out, _ = first.communicate(timeout=300)
        waited = time.monotonic() - killed_at
        # the job in flight waited the bound for the server, then failed; the later job and the sweep's finalisation
        # probed once instead of waiting again
        assert first.returncode == 1, out[-3000:]
        assert OUTAGE_S <= waited < OUTAGE_S + 90, f"the sweep ended {waited:.0f} s after the kill:\n{out[-3000:]}"
        assert f"{server.url} is not reachable" in out, out[-3000:]

        # started while the server is down: a clear message, before anything is trained
        t0 = time.monotonic()
        down = run_entry(sweep_cmd(tmp_path, server.url), cwd=ROOT, env=ENV, timeout=300)
        assert down.returncode == 2, down.stdout[-2000:] + down.stderr[-2000:]
        assert f"{server.url} is not reachable" in down.stderr and "Nothing was trained." in down.stderr
        assert time.monotonic() - t0 < 60

        server.start()  # the same store, back after the outage
        again = run_entry(sweep_cmd(tmp_path, server.url), cwd=ROOT, env=ENV, timeout=600)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
        runs = client.search_runs([exp_id])
        assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
        by_key = collections.defaultdict(list)
        for r in runs:
            if r.info.status == "FINISHED" and r.data.tags.get("role") in ("baseline", "transfer"):
                by_key[r.data.tags["run_key"]].append(r)
        assert all(len(v) == 1 for v in by_key.values()), "a key FINISHED twice"
        seeds = collections.Counter((v[0].data.tags["role"], v[0].data.tags["seed"]) for v in by_key.values())
        assert seeds == {(role, s): 1 for role in ("baseline", "transfer") for s in "012"}
        # nothing finished before the outage was lost or trained again
        assert all([r.info.run_id for r in by_key[key]] == [run_id] for run_id, key in finished_before.items())
        # the run the outage interrupted could not be marked; the rerun's reaper did, and its key trained anew
        interrupted = client.get_run(caught)
        assert interrupted.info.status in ("FAILED", "FINISHED")
        if interrupted.info.status == "FAILED":
            assert interrupted.data.tags["failure_reason"].startswith("stale:")
        parents = sorted((r for r in runs if r.data.tags["role"] == "sweep"), key=lambda r: r.info.start_time)
        assert [p.info.status for p in parents] == ["FAILED", "FINISHED"]  # the first sweep's parent, reaped
        assert parents[-1].data.metrics["sweep/jobs"] == 3 and parents[-1].data.metrics["sweep/reused"] >= 1
    finally:
        stop(server.proc)
