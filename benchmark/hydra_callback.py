"""The Hydra callback of a sweep (``hydra.callbacks.sweep`` in ``conf/config.yaml``): preflight and the parent run
before the first job, the sweep's verdicts after the last one."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from benchmark import provenance, sweep, sweep_jobs, tracking
from benchmark.credentials import credential_problems, uri_problems
from benchmark.launchers import runs_here
from benchmark.preflight import enumerates, preflight, sweep_overrides
from benchmark.sweeper import design_of

log = logging.getLogger("benchmark")


def artifact_root(cfg: DictConfig) -> Path | None:
    root = cfg.tracking.get("artifact_root")
    return Path(root) if root else None


def refuse_credentials(config: DictConfig) -> None:
    """Stop (exit 2) when an override or the tracking URI carries a credential (``benchmark.credentials``), naming
    the key, never the value, and nothing else is done."""
    overrides = [*config.hydra.overrides.task, *config.hydra.overrides.hydra]
    problems = credential_problems(overrides)
    # a URI interpolating ${hydra:...} may not resolve this early: left to resolve_uri, which sees the same value
    uri = OmegaConf.select(config, "tracking.uri", throw_on_resolution_failure=False)
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    problems += uri_problems(str(uri))
    if problems:
        print("\nError: " + "\n  - ".join(["a credential in the config; nothing was run:", *problems]), file=sys.stderr)
        raise SystemExit(2)  # not an Exception: Hydra would turn a callback's exception into a warning


class SweepCallback(Callback):
    """Creates the parent run before the first job and finalises the sweep after the last one."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_credentials(config)  # before Hydra saves the job's config and overrides

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_credentials(config)  # before Hydra saves multirun.yaml and the sweep starts
        HydraConfig.instance().set_config(config)  # so ${hydra:...} interpolations resolve here too
        sweep_jobs.forget()  # preflight builds this sweep's jobs afresh, and the sweeper reads them (benchmark.reuse)
        root = Path(config.hydra.runtime.cwd)
        try:  # a bad URI or bound, or a server that does not answer: said before anything is trained
            uri = tracking.resolve_uri(config.tracking.uri, root)
            tracking.check_shared_store(uri, runs_here(OmegaConf.select(config, "hydra.launcher._target_")))
            outage = tracking.bound_outage(config.tracking.get("outage_s"))
            tracking.check_server(uri, wait_s=tracking.START_WAIT_S)
            tracking.check_access(uri)
        except (tracking.ServerUnreachable, ValueError) as exc:
            print(f"\nError: {exc}\nNothing was trained.", file=sys.stderr)
            raise SystemExit(2) from None  # not an Exception: Hydra would turn it into a warning and go on
        if outage is not None:
            log.info("tracking server %s: a request waits up to %.0f s for it, then the job fails", uri, outage)
        try:
            design = design_of(config)
        except ValueError as exc:
            design, sweep_problem = None, [str(exc)]
        else:
            sweep_problem = []
        if config.get("preflight", True) or sweep_problem:
            t0 = time.perf_counter()
            problems = sweep_problem + (preflight(config) if config.get("preflight", True) else [])
            if problems:
                print(f"\nPreflight: {len(problems)} problem(s); nothing was trained.", file=sys.stderr)
                for p in problems:
                    print(f"  - {p}", file=sys.stderr)
                # SystemExit, not an Exception: Hydra turns callback exceptions into warnings and goes on
                raise SystemExit(2)
            log.info("preflight: %d jobs valid in %.1f s", len(sweep_overrides(config)), time.perf_counter() - t0)
        overrides = list(config.hydra.overrides.task)
        sweep.start(
            uri,
            str(config.tracking.experiment),
            artifact_root(config),
            Path(config.hydra.sweep.dir),
            overrides,
            provenance.git_sha(),
            str(config.verdict.metric),
            float(config.verdict.alpha),
            float(config.verdict.margin),
            asdict(design) if design is not None else None,
            # adaptive: rounds decide; a tuning sweeper (Optuna): its trials
            jobs=None if design is not None or not enumerates(config) else len(sweep_overrides(config)),
            at_cap=bool(config.verdict.at_cap),
        )
        client = tracking.open_store(uri)
        exp = client.get_experiment_by_name(str(config.tracking.experiment))
        tracking.reap_stale(client, exp.experiment_id, float(config.tracking.stale_after_s))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.finalize_active()
