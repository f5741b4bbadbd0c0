"""Where a run's time goes (issue 17, items 4 and 6): the entry module stays light for tab completion and --help,
and every trained run records its phases as ``time/*_s`` metrics that add up to no more than its wall time.

Nothing here asserts that something is fast (``python -m benchmark.bench --only jobs overhead`` measures that); these
tests check what is imported and what is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "timm", "mlflow", "scipy", "sklearn", "pandas", "matplotlib")


def _python(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_importing_the_entry_module_imports_no_heavy_library():
    # A subprocess, since this test process has long imported torch: every <kbd>Tab</kbd> of shell completion and
    # every --help starts `benchmark.run` afresh, and torch + Lightning + timm + MLflow cost ~8 s of CPU there.
    code = f"import sys, benchmark.run; print([m for m in {HEAVY!r} if m in sys.modules])"
    assert json.loads(_python(code).strip().replace("'", '"')) == []


def test_tab_completion_answers_from_the_configs_without_heavy_imports():
    # What Hydra prints for `transfer-bench strategy=scr<Tab>`, and what the process imported to answer it.
    code = (
        "import runpy, sys\n"
        "sys.argv = ['transfer-bench', '--shell-completion', 'query=bash']\n"
        "try:\n    runpy.run_module('benchmark.run', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = _python(code, COMP_LINE="transfer-bench strategy=scr")
    assert "strategy=scratch" in out.split()
    assert out.strip().splitlines()[-1] == "HEAVY []"
