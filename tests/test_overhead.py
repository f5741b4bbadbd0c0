"""Where a run's time goes (issue 17, items 4 and 6): the entry module stays light for tab completion and --help,
and every trained run records its phases as ``time/*_s`` metrics that add up to no more than its wall time.

Nothing here asserts that something is fast (``python -m benchmark.bench --only jobs overhead`` measures that); these
tests check what is imported and what is recorded."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from benchmark import phases

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


def test_a_sweep_job_logs_its_phases_and_they_add_up_to_its_wall_time(tmp_path, finished_sweep):
    # The shared finished sweep (conftest ``FINISHED_SWEEP``, 8 jobs in one process): the first job of each seed
    # trains that seed's baseline before its own run; the first job of each source pretrains it.
    from mlflow.tracking import MlflowClient

    # the frozen collector at exit closes no connection: the command must still leave every run in the database
    # file itself, not only in its write-ahead log (a copy of mlflow.db alone would lose them)
    with contextlib.closing(sqlite3.connect(finished_sweep.alone)) as con:
        assert con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0] >= 12
    client = MlflowClient(finished_sweep.copy_store(tmp_path))
    exp = client.get_experiment_by_name("e2e")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=100)}
    transfer = [r for r in runs.values() if r.data.tags.get("role") == "transfer"]
    records = [json.loads(p.read_text()) for p in sorted(finished_sweep.sweep_dir.rglob("transfer_bench_jobs/*.json"))]
    assert len(transfer) == 8 and len(records) == 8
    total, holds_its_baseline = 0.0, {}
    for record in records:
        m = runs[record["run_id"]].data.metrics
        spent = {k: v for k, v in m.items() if k.startswith(phases.PREFIX) and k != "time/job_s"}
        assert record["phases"] == {"time/job_s": m["time/job_s"], **spent}  # the run and the record agree
        assert {"compose", "store", "lookup", "run", "setup", "fit", "test", "log", "compare"} <= {
            k.removeprefix(phases.PREFIX).removesuffix("_s") for k in spent
        }
        assert all(v >= 0 for v in spent.values())
        assert sum(spent.values()) <= m["time/job_s"] + 1e-6
        # the fit phase holds the job's own fit and, in the job that trained it, its baseline's; nothing outside
        baseline = runs[record["baseline_run_id"]].data.metrics
        assert m["time/fit_s"] <= m["time/job_fit_s"] + 1e-3
        holds = m["time/fit_s"] + baseline["time/fit_s"] <= m["time/job_fit_s"] + 1e-3
        holds_its_baseline[record["baseline_run_id"]] = holds_its_baseline.get(record["baseline_run_id"]) or holds
        assert m["time/job_fit_s"] <= m["time/job_s"]
        total += m["time/job_s"]
    assert len(holds_its_baseline) == 2 and all(holds_its_baseline.values())  # each seed's baseline, in one job
    assert total < finished_sweep.command_s  # the jobs' wall time is part of the command's


def test_phases_count_self_time_once():
    watch = phases.Stopwatch()
    with watch.phase("outer"):
        time.sleep(0.02)
        with watch.phase("inner"):
            time.sleep(0.05)
        with watch.phase("outer"):  # re-entering a phase adds to it
            time.sleep(0.01)
    spent = watch.metrics()
    assert spent["time/job_inner_s"] >= 0.05
    assert 0.03 <= spent["time/job_outer_s"] < spent["time/job_inner_s"]  # the inner 0.05 s is not the outer's
    assert spent["time/job_s"] == spent["time/job_inner_s"] + spent["time/job_outer_s"]
    assert phases.phase("fit").__class__.__name__ == "nullcontext"  # outside a job, a phase times nothing


def test_the_jobs_of_a_process_share_one_client_per_store(tmp_path, store):
    # The basic launcher runs a sweep's jobs in one process: the store is opened (probed, put in WAL mode) once.
    from benchmark import tracking

    client = tracking.open_store(store)
    assert tracking.open_store(store) is client
    other = tracking.open_store(f"sqlite:///{tmp_path / 'other.db'}")
    assert other is not client and (tmp_path / "other.db").is_file()
