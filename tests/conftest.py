"""Shared fixtures: the conf folders as the registry, offline settings, and a migrated SQLite MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["strict_skips", "durations"]  # CI fails a skip (tests/strict_skips.py); --durations-file

# One torch thread per test process and per job it starts (pytest-xdist runs one process per core); a test about
# threads sets its own. Set before anything imports torch, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def options(group: str) -> list[str]:
    """Every option of a config group: the conf folder is the registry (STYLE R1); ``benchmark.compose.options``."""
    from benchmark.compose import options as conf_options  # the one definition; conftest must import cheaply

    return conf_options(group)


@pytest.fixture(scope="session")
def _migrated_store(shared_dir: Path) -> Path:
    """One SQLite store migrated per test session (~5 s), by the first worker that needs it; tests get copies (0.1 s).
    Its write-ahead log is folded into the file, so a copy of the file alone is the whole migrated store."""
    from benchmark.tracking import checkpoint, open_store

    def migrate(folder: Path) -> None:
        open_store(f"sqlite:///{folder / 'mlflow.db'}")
        checkpoint(folder / "mlflow.db")

    return built_once(shared_dir / "migrated_store", migrate) / "mlflow.db"


def built_once(folder: Path, build) -> Path:
    """``folder`` (under ``shared_dir``) after ``build(folder)`` ran in it once for the whole test session: the first
    process that asks builds it under a lock, one that asks meanwhile waits, the later ones find it done."""
    from benchmark.util import file_lock

    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / "lock"):
        if not (folder / "done").exists():
            build(folder)
            (folder / "done").touch()
    return folder


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by every process of this test session (pytest-xdist's workers too): work that tests in
    several workers need is done once, under a lock, by whichever needs it first."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def _remember_the_shared_dir(shared_dir: Path) -> None:
    global _session_dir
    _session_dir = shared_dir


@pytest.fixture
def store(_migrated_store: Path, tmp_path: Path) -> str:
    """A fresh, already-migrated SQLite tracking URI in this test's temp dir."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(_migrated_store, path)
    return f"sqlite:///{path}"


_prewarmed = None
_session_dir: Path  # shared_dir, set for the session by _remember_the_shared_dir


def run_entry(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, ...)`` for ``[sys.executable, "-m", "benchmark.<module>",
    ...]``, in a fresh process forked from an interpreter that has the job's imports done (tests/prewarmed.py): the
    same command, 12-15 s of imports cheaper. Tests about imports, signals or the wheel start their own interpreter."""
    global _prewarmed
    if cmd[:2] != [sys.executable, "-m"] or not cmd[2].startswith("benchmark."):
        raise ValueError(f"run_entry runs `python -m benchmark.<module> ...`, not {cmd[:3]}")
    if _prewarmed is None:
        from prewarmed import Server

        worker = os.environ.get("PYTEST_XDIST_WORKER")
        _prewarmed = Server(_session_dir / "prewarmed", os.getppid() if worker else os.getpid())
    return _prewarmed.run(cmd, **kwargs)


SWEEP_TINY = [
    "source.weights.recipe.epochs=1",
    "source.weights.dataset.n_per_class=40",
    "budget.epochs=1",
    "budget.min_steps=6",
    "budget.batch_size=32",
    "trainer.threads=1",  # one torch thread per job: the suite runs one test process per core
]
"""The end-to-end sweeps' budget: one epoch of source pretraining on 40 images per class, 6 steps per job."""


def run_sweep(tmp_path: Path, store: str, args: list[str], name: str = "sweep",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m benchmark.run -m <args>`` on the tiny budget into ``store`` (experiment ``e2e``), with its cache,
    artifacts and sweep directory ``name`` under ``tmp_path``."""
    cmd = [
        sys.executable, "-m", "benchmark.run", "-m", *args, *SWEEP_TINY,
        f"tracking.uri={store}", "tracking.experiment=e2e", f"tracking.artifact_root={tmp_path / 'artifacts'}",
        f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / name}",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return run_entry(cmd, cwd=ROOT, env=env, timeout=600)


FINISHED_SWEEP = ["source=synth_digits,shapes", "target=digits", "strategy=finetune,linear_probe", "label_budget=5",
                  "seed=0,1"]  # fmt: skip
"""Two harness-pretrained sources x two strategies x two seeds: 8 transfer runs, 2 baselines, 2 pretrainings."""


@dataclass(frozen=True)
class FinishedSweep:
    """One finished ``FINISHED_SWEEP`` (``run_sweep``, sweep directory ``first``), shared by the tests that only read
    it. Its store is never opened in place (a reader could fold SQLite's write-ahead log into it): ``copy_store``
    gives a test its own copy; ``alone`` is the database file alone, copied the moment the command exited."""

    folder: Path
    result: subprocess.CompletedProcess
    command_s: float

    @property
    def sweep_dir(self) -> Path:
        return self.folder / "first"

    @property
    def alone(self) -> Path:
        return self.folder / "alone.db"

    def copy_store(self, tmp_path: Path) -> str:
        import shutil

        shutil.copy(self.folder / "mlflow.db", tmp_path / "mlflow.db")
        return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def finished_sweep(shared_dir: Path, _migrated_store: Path) -> FinishedSweep:
    """``FINISHED_SWEEP`` run once per test session, by whichever worker asks first (the others wait on its lock),
    with ``CI=true`` as CI runs it (no progress bar)."""
    import json
    import shutil
    import time

    def sweep(folder: Path) -> None:
        shutil.copy(_migrated_store, folder / "mlflow.db")
        t0 = time.perf_counter()
        result = run_sweep(folder, f"sqlite:///{folder / 'mlflow.db'}", FINISHED_SWEEP, "first", {"CI": "true"})
        command_s = time.perf_counter() - t0
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        shutil.copy(folder / "mlflow.db", folder / "alone.db")
        (folder / "result.json").write_text(json.dumps({"stdout": result.stdout, "stderr": result.stderr,
                                                        "command_s": command_s}))  # fmt: skip

    folder = built_once(shared_dir / "finished_sweep", sweep)
    saved = json.loads((folder / "result.json").read_text())
    result = subprocess.CompletedProcess(["benchmark.run", *FINISHED_SWEEP], 0, saved["stdout"], saved["stderr"])
    return FinishedSweep(folder, result, saved["command_s"])


def compose(overrides: list[str], tmp_path: Path | None = None):
    """The config that ``python -m benchmark.run <overrides>`` would see (real Hydra composition)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


def install_stamp(project: Path) -> str:
    """The install stamp ``scripts/_env.sh`` computes in ``project``, by its own ``install_stamp`` function."""
    line = next(ln for ln in (ROOT / "scripts" / "_env.sh").read_text().splitlines() if ln.startswith("install_stamp"))
    out = subprocess.run(["bash", "-c", f"set -euo pipefail; {line}; install_stamp"], cwd=project, text=True,
                         capture_output=True, check=True)  # fmt: skip
    return out.stdout.strip()


def env_sh_project(project: Path) -> Path:
    """A copy of what ``scripts/_env.sh`` reads (the scripts, pyproject.toml, setup.py) in ``project``, and the
    environment running the tests, which ``_env.sh`` in that copy finds installed: its stamp, computed by ``_env.sh``'s
    own ``install_stamp``, must be there, or sourcing ``_env.sh`` would reinstall into it, never wanted from a test."""
    import shutil

    shutil.copytree(ROOT / "scripts", project / "scripts")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, project / name)
    stamp = install_stamp(project)
    venv = Path(sys.prefix)
    if not (venv / f".transfer-bench-{stamp}").is_file():
        pytest.fail(f"{venv} was not set up by scripts/_env.sh (no .transfer-bench-{stamp}); run scripts/test.sh")
    return venv


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc, url: str, timeout_s: float = 90) -> None:
    """Wait until an `mlflow server`/`mlflow ui` process answers /health; raise with its stderr if it died."""
    import time
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:]) from None
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{url} did not come up in {timeout_s:.0f} s")


def stop(proc, grace_s: float = 20) -> None:
    """End a server started with start_new_session=True: SIGTERM to its group, SIGKILL after ``grace_s``."""
    import os
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
