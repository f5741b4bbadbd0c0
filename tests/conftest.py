"""Shared fixtures: the conf folders as the registry, offline settings, and a migrated SQLite MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["strict_skips"]  # in CI (CI=true) a skipped test fails: see tests/strict_skips.py

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
def _migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store migrated per test session (~5 s); tests get copies (0.1 s)."""
    from benchmark.tracking import open_store

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    open_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(_migrated_store: Path, tmp_path: Path) -> str:
    """A fresh, already-migrated SQLite tracking URI in this test's temp dir."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(_migrated_store, path)
    return f"sqlite:///{path}"


def compose(overrides: list[str], tmp_path: Path | None = None):
    """The config that ``python -m benchmark.run <overrides>`` would see (real Hydra composition)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


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
