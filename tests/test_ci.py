"""CI cannot go green on a promise it did not check: skips fail under CI=true, and a broken install stops the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, install_stamp

SAMPLE = """
import pytest

def test_runs():
    assert True

def test_needs_a_browser():
    pytest.skip("chromium missing")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
"""
MODULE_SKIP = 'import pytest\npytest.importorskip("a_module_that_is_not_installed")\n\ndef test_x():\n    pass\n'


def _pytest(tmp_path: Path, source: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(source)
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "TRANSFER_BENCH_STRICT_SKIPS")}
    environ.update(PYTHONPATH=str(ROOT / "tests"), **env)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "strict_skips",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        "test_sample.py",
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)


def test_a_skip_is_a_skip_locally(tmp_path):
    out = _pytest(tmp_path, SAMPLE)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in out.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"TRANSFER_BENCH_STRICT_SKIPS": "1"}])
def test_a_skip_fails_in_ci_and_names_its_reason(tmp_path, env):
    out = _pytest(tmp_path, SAMPLE, **env)
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed, 1 xfailed" in out.stdout
    assert "skipped in CI, where every promised test must run: Skipped: chromium missing" in out.stdout


def test_a_module_level_skip_fails_in_ci(tmp_path):
    assert _pytest(tmp_path, MODULE_SKIP).returncode == 5  # locally: skipped, so no test ran
    out = _pytest(tmp_path, MODULE_SKIP, CI="true")
    assert out.returncode != 0, out.stdout
    assert "a_module_that_is_not_installed" in out.stdout and "skipped in CI" in out.stdout


def test_a_failed_install_stops_the_scripts_with_pips_message(tmp_path):
    """scripts/_env.sh (sourced by test.sh and quickstart.sh) stops when pip fails, even when what it imports is there.

    pip is made to fail at once, offline (a constraints file that does not exist), in a venv that sees this
    environment's packages: an install step that swallowed pip's exit status would go on to the tests.
    """
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    # this environment's site-packages, .pth files included (the editable install of benchmark is one)
    adds = "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages())
    (purelib / "outer.pth").write_text(f"import site; {adds}\n")  # a .pth line runs only when it starts with import
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "_env.sh").write_text((ROOT / "scripts" / "_env.sh").read_text())
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "broken-install"\nversion = "0"\n')
    (venv / "bin" / "ruff").symlink_to(Path(sys.executable).parent / "ruff")
    missing = tmp_path / "transfer-bench-missing-constraints.txt"
    env = {**os.environ, "VENV": str(venv), "PIP_CONSTRAINT": str(missing), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    out = subprocess.run(["bash", "-c", "source scripts/_env.sh && echo REACHED-THE-TESTS"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode != 0 and "REACHED-THE-TESTS" not in out.stdout, out.stderr[-2000:]
    assert "install failed" in out.stderr and missing.name in out.stderr, out.stderr[-2000:]


def test_the_install_stamp_changes_with_pyproject_and_setup_py(tmp_path):
    """scripts/_env.sh reinstalls when its stamp changes: a change to setup.py (the package list) must change it as a
    change to pyproject.toml does, and the stamp of an unchanged checkout stays the same."""

    def stamp() -> str:
        return install_stamp(tmp_path)  # _env.sh's own function, run in tmp_path

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    without_setup = stamp()
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    first = stamp()
    assert first == stamp() and first != without_setup
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup(packages=['x'])\n")
    assert stamp() != first
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert len({first, stamp()}) == 2


def test_ci_installs_chromium_or_stops():
    """.ci/run turns a failed Chromium install into an error, and runs the whole suite with strict skips."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and "export CI=true" in ci and "scripts/test.sh --all" in ci
    assert "exit 1" in ci.split("apt-get install", 1)[1].split("fi", 1)[0]
