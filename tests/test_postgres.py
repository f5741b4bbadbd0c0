"""Team mode on a real PostgreSQL: Debian's server (``.ci/run`` installs it) started by the test on a free loopback
port, ``scripts/mlflow_server.sh`` run over it as a user would (``BACKEND=postgresql://...``, the driver from the
``server`` extra), and a parallel sweep through that server with nothing lost or duplicated."""

from __future__ import annotations

import collections
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import env_sh_project, free_port, stop, wait_healthy
from mlflow.tracking import MlflowClient
from test_team import ENV, _sweep

PG_USER, PG_PASSWORD, PG_DB = "mlflow", "test-only-secret", "mlflow"


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries (initdb, pg_ctl are not on PATH there), newest major version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own (initdb into a temp dir, password auth, TCP on 127.0.0.1 only, its socket in
    the temp dir), with an empty ``mlflow`` database; yields its SQLAlchemy URL and stops the server afterwards.

    PostgreSQL refuses to run as root: as root, the cluster belongs to Debian's ``postgres`` user (``runuser``), in a
    directory outside pytest's root-only temp tree.
    """
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[server]'")
    base = Path(tempfile.mkdtemp(prefix="transfer-bench-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    pwfile = base / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if as_owner:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", free_port()

    def pg(*args: str) -> None:
        out = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{args[0]} failed: {out.stdout[-1500:]}{out.stderr[-1500:]}"

    pg(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
       "-E", "UTF8")  # fmt: skip
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", options, "-w", "start")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres",
                             autocommit=True) as con:  # fmt: skip
            con.execute(f"CREATE DATABASE {PG_DB}")
        yield f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DB}"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_server(tmp_path, postgres) -> Iterator[str]:
    """``scripts/mlflow_server.sh`` over the PostgreSQL database, started from a copy of the project (as in
    ``tests/test_scripts.py``) with its artifacts in the test's temp dir; yields its URL."""
    project = tmp_path / "project"
    venv = env_sh_project(project)
    port = free_port()
    env = {**ENV, "VENV": str(venv), "PORT": str(port), "WORKERS": "2", "BACKEND": postgres,
           "ARTIFACTS": str(tmp_path / "served")}  # fmt: skip
    env.pop("HOST", None)
    proc = subprocess.Popen(["bash", str(project / "scripts" / "mlflow_server.sh")], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, timeout_s=180)  # a fresh database is migrated first (MLflow's Alembic revisions)
        yield url
    finally:
        stop(proc, grace_s=5)  # it took over 20 s to end on SIGTERM here; the runs are in PostgreSQL already


@pytest.mark.slow
def test_parallel_sweep_through_a_server_on_postgresql(tmp_path, pg_server, postgres):
    """Four jobs, two at a time, each training its baseline first, all writing through one server into PostgreSQL:
    every run FINISHED, no run key trained twice, the sweep's verdicts on its parent run."""
    extra = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "tracking=server", f"tracking.uri={pg_server}",
             "seed=0,1,2,3"]  # fmt: skip
    result = _sweep(tmp_path, extra)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(pg_server)
    runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    roles = collections.Counter(r.data.tags["role"] for r in runs)
    assert roles == {"baseline": 4, "transfer": 4, "pretrain": 1, "sweep": 1, "cell": 1}, roles
    assert {r.info.status for r in runs} == {"FINISHED"}
    keys = collections.Counter(r.data.tags["run_key"] for r in runs if "run_key" in r.data.tags)
    assert keys and max(keys.values()) == 1, f"run keys trained twice: {[k for k, n in keys.items() if n > 1]}"
    assert {r.data.tags["device"] for r in runs if r.data.tags["role"] in ("baseline", "transfer")} == {"cpu:1"}
    parent = next(r for r in runs if r.data.tags["role"] == "sweep")
    assert parent.data.metrics["sweep/jobs"] == 4 and parent.data.metrics["sweep/failed"] == 0
    assert "report/verdicts.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    cell = next(r for r in runs if r.data.tags["role"] == "cell")
    assert cell.data.tags.get("verdict"), cell.data.tags
    # the runs are rows of PostgreSQL, not of a SQLite file the server might have fallen back to
    import psycopg  # the server extra: imported here so that collection on a machine without it still works

    with psycopg.connect(postgres) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0] == len(runs)
