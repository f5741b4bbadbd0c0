"""Team and cluster mode: a real `mlflow server` on 127.0.0.1, and the Slurm launcher's local executor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, free_port, run_entry, stop, wait_healthy
from mlflow.tracking import MlflowClient

TINY = ["source=synth_digits", "strategy=linear_probe", "label_budget=3", "source.weights.recipe.epochs=1",
        "source.weights.dataset.n_per_class=40", "budget.epochs=1", "budget.min_steps=4",
        "trainer.threads=1"]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def server(tmp_path, _migrated_store):
    """`mlflow server` bound to loopback over a SQLite backend and a served artifact store."""
    import shutil

    db = tmp_path / "server.db"
    shutil.copy(_migrated_store, db)
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(tmp_path / "served"),
           "--serve-artifacts", "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url)
    yield url
    stop(proc)


def _sweep(tmp_path: Path, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "benchmark.run", "-m", *TINY, *extra, "tracking.experiment=team",
           f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    return run_entry(cmd, cwd=ROOT, env=ENV, timeout=600)


def test_sweep_against_a_real_tracking_server(tmp_path, server):
    result = _sweep(tmp_path, ["tracking=server", f"tracking.uri={server}", "seed=0,1"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("team")
    runs = client.search_runs([exp.experiment_id])
    roles = sorted(r.data.tags["role"] for r in runs)
    assert roles == ["baseline", "baseline", "cell", "pretrain", "sweep", "transfer", "transfer"]
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = next(r for r in runs if r.data.tags["role"] == "sweep")
    # artifacts went through the server's proxy into its artifact store
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/verdicts.md" in names
    assert any((tmp_path / "served").rglob("verdicts.md"))


@pytest.mark.slow
def test_slurm_launcher_path_with_the_local_executor(tmp_path, store):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    extra = ["hydra/launcher=slurm_local", f"tracking.uri={store}", "seed=0,1"]
    result = _sweep(tmp_path, extra)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert sorted(r.data.tags["role"] for r in runs) == ["baseline", "baseline", "cell", "pretrain", "sweep",
                                                         "transfer", "transfer"]  # fmt: skip
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = next(r for r in runs if r.data.tags["role"] == "sweep")
    assert parent.data.metrics["sweep/jobs"] == 2


def test_a_sweep_on_other_machines_refuses_a_sqlite_store_before_training(tmp_path, store):
    """Slurm's launcher (composed for real, submitit installed) with a SQLite store: the sweep stops before anything
    trains, naming the URI and the tracking server to use instead; the local executor may share the file."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from benchmark import tracking
    from benchmark.launchers import runs_here

    result = _sweep(tmp_path, ["hydra/launcher=slurm", f"tracking.uri={store}", "seed=0"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"tracking URI {store!r} is a SQLite file" in result.stderr and "tracking=server" in result.stderr
    assert "Nothing was trained" in result.stderr and not (tmp_path / "cache").exists()
    client = MlflowClient(store)
    assert client.get_experiment_by_name("team") is None  # no parent run, no experiment: nothing was started
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"  # conf/hydra/launcher/slurm_local
    tracking.check_shared_store(store, runs_here(local))
    tracking.check_shared_store("http://127.0.0.1:5000", jobs_run_here=False)  # a server is what it asks for


@pytest.fixture
def auth_server(tmp_path, _migrated_store):
    """`mlflow server --app-name basic-auth` (MLflow's authentication app) on loopback, its admin credentials in a
    config file only its owner may read, as docs/how-to/clusters-and-team-server.md sets it up."""
    import shutil

    pytest.importorskip("flask_wtf")  # mlflow[auth]
    config = tmp_path / "auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{tmp_path / 'users.db'}\nadmin_username = admin\n"
                      "admin_password = adm1n-pw-for-tests\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")  # fmt: skip
    config.chmod(0o600)
    shutil.copy(_migrated_store, tmp_path / "server.db")
    port = free_port()
    env = {**ENV, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only-key"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port",
           str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url)
    yield url
    stop(proc)


@pytest.mark.slow  # an authenticating server starts in 20-30 s
def test_a_sweep_against_an_authenticating_server_needs_credentials_before_training(tmp_path, auth_server, monkeypatch):
    """No credentials, or a wrong password: the sweep stops before anything trains, saying what to set (never the
    password); the admin's credentials from the environment pass the same check."""
    from benchmark import tracking

    args = ["tracking=server", f"tracking.uri={auth_server}", "seed=0"]
    for extra, said in [({}, "none were given"), ({"MLFLOW_TRACKING_USERNAME": "admin",
                        "MLFLOW_TRACKING_PASSWORD": "wrong-pw-3141"}, "refused those given")]:  # fmt: skip
        env = {**ENV, **extra}
        result = run_entry([sys.executable, "-m", "benchmark.run", "-m", *TINY, *args, "tracking.experiment=team",
                            f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                           cwd=ROOT, env=env, timeout=600)  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"{auth_server} asks for credentials (HTTP 401) and {said}" in result.stderr
        assert "MLFLOW_TRACKING_PASSWORD" in result.stderr and "wrong-pw-3141" not in result.stdout + result.stderr
        assert not (tmp_path / "cache").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "adm1n-pw-for-tests")
    tracking.check_access(auth_server)  # the admin may
