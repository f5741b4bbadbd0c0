"""Entry point: ``python -m benchmark.run [-m] source=... target=... strategy=... seed=...``.

Thin by design: Hydra composes the config, ``benchmark.compose`` turns it into a typed job, ``benchmark.job`` runs
it, and the job's record goes to the sweep's finaliser. Each job prints one line: ``[k/N]``, the sweep's elapsed
time and an ETA (``benchmark.sweep.progress``), then its result. Signals end the runs in flight KILLED (exit 130/143).

Importing this module costs what Hydra costs (~0.2 s), nothing more: torch, Lightning, timm and MLflow (~8 s of CPU
on 2 cores) are imported when a job runs (``run_job``) or a sweep starts (``main``), never for tab completion or
``--help``, which start this app on every <kbd>Tab</kbd> (``tests/test_overhead.py`` checks it).
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from benchmark import config_defaults, phases
from benchmark.config_path import CONFIG_NAME, CONFIG_PATH
from benchmark.threads import job_threads, parallel_launcher, set_threads

log = logging.getLogger("benchmark")


def run_job(cfg: DictConfig) -> float | None:
    """Run the job ``cfg`` describes and return its objective (``benchmark.job.objective``), timing where its wall
    time goes (``benchmark.phases``: logged on the run it trained, written to its sweep record)."""
    with phases.job() as watch:
        return _run_job(cfg, watch)


def _run_job(cfg: DictConfig, watch: phases.Stopwatch) -> float | None:
    # here, not at the top: tab completion and --help import this module and must not pay for torch, Lightning,
    # timm and MLflow (~8 s of CPU); a sweep pays once, its first job, since its jobs share one process
    from benchmark import devices, sweep, sweep_jobs, tracking
    from benchmark.compose import build_job, build_lineage
    from benchmark.hydra_callback import artifact_root
    from benchmark.job import execute, objective
    from benchmark.spec import Context, check_rerun

    hc = HydraConfig.get()
    root = Path(hc.runtime.cwd)
    choices = dict(hc.runtime.choices)
    set_threads(job_threads(cfg.trainer.get("threads"), hc.launcher))
    multirun = hc.mode == RunMode.MULTIRUN
    state = sweep.find_state(Path(hc.sweep.dir)) if multirun else None
    if multirun and state is None:
        log.warning("no sweep state in %s: this job runs without a parent run or sweep verdicts", hc.sweep.dir)
    record: dict[str, Any] = {"name": " ".join(hc.overrides.task), "overrides": list(hc.overrides.task)}
    uri = None
    try:
        tracking.bound_outage(cfg.tracking.get("outage_s"))
        uri = state.tracking_uri if state is not None else tracking.resolve_uri(cfg.tracking.uri, root)
        rerun = check_rerun(cfg.get("rerun", config_defaults.RERUN))
        job_num = int(hc.job.num) if multirun else 0  # a single run has no job number (Hydra leaves it unset)
        with phases.phase("compose"):  # a sweep's job as preflight built it, when this process did
            job = (sweep_jobs.take(hc.overrides.task) if multirun else None) or build_job(cfg, choices)
            job = devices.assign(job, job_num, multirun and parallel_launcher(hc.launcher))
        record.update(sweep.job_fields(job))
        with phases.phase("store"):
            client = tracking.open_store(uri)
            if state is not None:
                exp_id, parent, sweep_id = state.experiment_id, state.parent_run_id, state.sweep_id
            else:
                exp_id = tracking.ensure_experiment(client, cfg.tracking.experiment, artifact_root(cfg))
                tracking.reap_stale(client, exp_id, float(cfg.tracking.stale_after_s))
                parent = sweep_id = None
        ctx = Context(client, exp_id, Path(cfg.cache_dir).resolve(), parent, sweep_id, rerun=rerun,
                      lineage=build_lineage(cfg.tracking))  # fmt: skip
        outcome = execute(job, ctx)
        spent = watch.metrics()
        record["phases"] = spent
        if not outcome.reused:  # where the run's job spent its time, next to time/fit_s (a reused run keeps its own)
            tracking.log_metrics(client, outcome.run_id, spent)
        record.update(sweep.outcome_fields(outcome))
    except BaseException as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:1000])
        if uri is not None and tracking.note_unreachable(uri, exc):  # the next jobs probe once, not wait again
            log.error(tracking.unreachable_message(uri, "no answer within tracking.outage_s"))
        raise
    finally:
        progress = ""
        if state is not None:
            sweep.write_record(sweep.record_path(state, int(hc.job.num)), record)
            progress = sweep.progress(state, int(hc.job.num)) + " "
        if record.get("status") == "failed":
            print(f"{progress}{record['name']}: FAILED {record['error']}", flush=True)
    print(progress + sweep.result_line(job, outcome), flush=True)
    return objective(outcome.metrics, job.selection)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def _interrupted(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs in flight end KILLED, the sweep is finalised KILLED, exit 130/143


LIGHT_FLAGS = ("--shell-completion", "--help", "-h", "--hydra-help")
"""Requests that only read the configs: Hydra answers them without a job or a sweep, so nothing heavy is imported."""


def main() -> None:
    light = any(arg.split("=", 1)[0] in LIGHT_FLAGS for arg in sys.argv[1:])
    if not light:
        # The sweeper's imports (torch, Lightning, timm, MLflow) build millions of objects that live as long as the
        # process, and every collection walked them again: during the imports, then in the first collections after.
        # Off while importing, then frozen (moved out of the collector's sight; cyclic garbage made after this is
        # collected as before): these imports and the later ones (MLflow's SQL store, the report) took 7.9-8.1 s on
        # a 2-core machine, 5.9-6.1 s frozen (measured 2026-12-01).
        gc.disable()
        try:
            # here, not at the top: the sweeper imports MLflow and SciPy, which tab completion and --help never need
            from benchmark import sweep, sweeper, tracking

            sweeper.register()
        finally:
            gc.freeze()
            gc.enable()
    signal.signal(signal.SIGTERM, _interrupted)
    # Ctrl-C too, not as KeyboardInterrupt: Lightning catches that inside fit and calls sys.exit(1), which reads as
    # a failed job (exit 1, parent FAILED) instead of an interrupted sweep
    signal.signal(signal.SIGINT, _interrupted)
    killed = False
    try:
        _hydra_main()
    except KeyboardInterrupt:
        killed = True
        raise
    except SystemExit as exc:
        killed = exc.code not in (None, 0, 1, 2)  # 1: a job failed (Hydra), 2: preflight; others: a signal
        raise
    finally:
        if not light:  # a light request starts no sweep
            sweep.finalize_active(killed)  # released Hydra skips on_multirun_end when a job failed
            tracking.checkpoint_stores()  # the frozen collector below never closes MLflow's SQLite connections
        # Nothing of what the imports built (torch, Lightning, MLflow, pandas: millions of objects) is garbage before
        # exit, yet the interpreter's last collections walk it all: 2.6-3.6 s of a 2-core machine, against 0.5 s
        # frozen (measured 2026-11-30). Freezing leaves that memory to the OS; atexit handlers still run and
        # reference counting still closes files.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
