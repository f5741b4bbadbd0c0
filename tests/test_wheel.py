"""The wheel, installed as a user installs it: built from this checkout, installed into a fresh virtual environment
outside it, and run from another directory. An editable install hides what a wheel forgets (``conf/`` sits next to
the code in a checkout), so only a real wheel shows that the configs, the console scripts and the license ship.

The fresh environment reuses the dev environment's dependencies through a ``.pth`` line (nothing is copied or
downloaded). Such a line adds a folder to ``sys.path`` without running the ``.pth`` files in it, so the dev
environment's editable install of this checkout stays inert: ``benchmark`` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from mlflow.tracking import MlflowClient

# builds a wheel and starts several fresh interpreters: about a minute on 2 cores; one worker builds the wheel, once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_wheel")]

BUILD_INPUTS = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "benchmark", "conf"]  # what setuptools reads
SCRIPTS = ["transfer-bench", "transfer-bench-report", "transfer-bench-rank", "transfer-bench-ui"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the build inputs (built in place, it would leave build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            subprocess.run(["cp", "-r", str(ROOT / name), str(src / name)], check=True)
        else:
            (src / name).write_bytes((ROOT / name).read_bytes())
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
          str(src)], cwd=src)  # fmt: skip
    (built,) = dist.glob("transfer_bench-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with the wheel installed and the dev dependencies visible."""
    env_dir = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=env_dir)
    python = env_dir / "bin" / "python"
    # pip from the dev environment installs into the new one; before the .pth exists, so that pip sees an empty
    # environment and never touches the dev environment's editable install
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=env_dir)  # fmt: skip
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=env_dir).strip()
    (Path(purelib) / "dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env_dir


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "PYTHONHOME")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip


def test_the_wheel_ships_the_configs_the_scripts_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"benchmark/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")}
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "benchmark").rglob("*.py")}
    assert "benchmark/conf/config.yaml" in names
    assert not configs - names, f"configs missing from the wheel: {sorted(configs - names)}"
    assert not modules - names, f"modules missing from the wheel: {sorted(modules - names)}"
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    for script in SCRIPTS:
        assert f"{script} = benchmark." in entry_points, entry_points


def test_the_installed_wheel_runs_a_sweep_from_another_directory(venv, store, tmp_path):
    """A one-job sweep through the console script, with the configs found inside the installed package."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(venv)
    probe = ("import json, sys, benchmark, benchmark.config_path as c; "
             "print(json.dumps({'file': benchmark.__file__, 'conf': str(c.CONF_DIR), 'path': sys.path}))")  # fmt: skip
    where = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], cwd=elsewhere, env=env))
    package = Path(where["file"]).parent
    assert package.is_relative_to(venv), f"benchmark imported from {package}, not from the installed wheel"
    assert Path(where["conf"]) == package / "conf" and (package / "conf" / "config.yaml").is_file()
    importable = [p for p in where["path"] if p and (Path(p) / "benchmark").is_dir()]
    assert importable == [str(package.parent)], f"more than the wheel provides a benchmark package: {importable}"
    assert str(ROOT) not in where["path"] and str(ROOT / "benchmark") not in where["path"]

    out = _run(["transfer-bench", "-m", "source=synth_digits", "target=digits", "strategy=scratch", "label_budget=5",
                "seed=0", "budget.epochs=1", "budget.min_steps=6", "budget.batch_size=32", "scores=false",
                f"tracking.uri={store}", "tracking.experiment=wheel", f"tracking.artifact_root={tmp_path / 'art'}",
                f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
               cwd=elsewhere, env=env, timeout=600)  # fmt: skip
    assert "synth_digits" in out or "digits" in out, out[-2000:]
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("wheel")
    runs = client.search_runs([exp.experiment_id], "tags.strategy = 'scratch'")
    assert [r.info.status for r in runs] == ["FINISHED"], [(r.info.run_name, r.info.status) for r in runs]
    assert "test/acc" in runs[0].data.metrics
    assert not (elsewhere / "mlflow.db").exists()  # the store is the one the sweep was given

    for script in SCRIPTS[1:]:  # the other commands start from the installed package
        assert "usage:" in _run([script, "--help"], cwd=elsewhere, env=env)


def test_shell_completion_attaches_to_the_installed_command(venv, tmp_path):
    """What bash does on <TAB>: the script from ``--shell-completion install=bash`` is evaluated, then its function is
    called with bash's completion variables set; group names and options come from the packaged configs."""
    complete = """
    eval "$(transfer-bench --shell-completion install=bash)"
    complete -p transfer-bench
    for line in "transfer-bench strat" "transfer-bench strategy=scr"; do
        COMP_LINE="$line"; COMP_POINT=${#line}; COMP_WORDS=($line); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        hydra_bash_completion
        echo "$line -> ${COMPREPLY[*]}"
    done
    """
    out = _run(["bash", "-c", complete], cwd=tmp_path, env=_env(venv))
    assert "-F hydra_bash_completion transfer-bench" in out.splitlines()[0], out
    replies = dict(line.split(" -> ") for line in out.splitlines()[1:])
    assert {"strategy=", "strategy."} <= set(replies["transfer-bench strat"].split()), out  # README: Shell completion
    assert replies["transfer-bench strategy=scr"].split() == ["strategy=scratch"], out
