"""The Hydra sweeper of the harness: Hydra's basic sweeper, plus adaptive seeds (``seeds.mode=adaptive``).

With ``seeds.mode=fixed`` (the default) it is Hydra's ``BasicSweeper`` unchanged: every combination of the swept
values is one job. With ``seeds.mode=adaptive`` the ``seed`` axis of the sweep is replaced by a group-sequential
design (``benchmark.sequential``): every cell (a combination of everything swept except the seed) starts with seeds
``0..seeds.min-1``; after each round the deltas in the store decide which cells are still open, and only those get
the next look's seeds, until decided or at ``seeds.max``. The design's state is the store itself: a round re-launched
after an interruption reuses its FINISHED runs (``benchmark.job``), so re-running the command replays the decisions
already taken and resumes where it stopped.

A cell whose strategy is a baseline has no delta; it runs the first round only. A seed that failed gives no delta:
the cell asks for one more seed in its place, so a look counts observed deltas, never launched jobs.

Hydra instantiates sweepers only from its ``hydra_plugins`` namespace and only classes it has registered. Rather than
ship a second top-level package, ``register`` (called by the entry point, ``benchmark.run``, in the process that runs
the sweeper) publishes the class as module ``hydra_plugins.transfer_bench`` and adds it to Hydra's registry;
``conf/config.yaml`` names it ``hydra_plugins.transfer_bench.TransferSweeper``. Both rely on Hydra internals: pinned
below Hydra's next minor release in ``pyproject.toml``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra_plugins
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from benchmark import config_defaults, reuse, sequential, sources_first, sweep, sweep_jobs, tracking

log = logging.getLogger("benchmark")

BASIC = "hydra._internal.core_plugins.basic_sweeper"  # private: pinned below Hydra's next minor release

MODES = ("fixed", "adaptive")


def design_of(config: DictConfig) -> sequential.SequentialDesign | None:
    """The sweep's sequential design (None: ``seeds.mode=fixed``); a ValueError names a bad mode."""
    seeds = {**config_defaults.SEEDS, **(config.get("seeds") or {})}  # a key deleted by ~seeds.x: the YAML's default
    mode = seeds["mode"]
    if mode not in MODES:
        raise ValueError(f"seeds.mode={mode!r} is not a valid choice; choose one of: {', '.join(MODES)}")
    if mode == "fixed":
        return None
    return sequential.SequentialDesign(
        min_seeds=int(seeds["min"]),
        max_seeds=int(seeds["max"]),
        step=int(seeds["step"]),
        shape=float(seeds["shape"]),
        futility=float(seeds["futility"]),
        alpha=float(config.verdict.alpha),
        margin=float(config.verdict.margin),
    )


def cells_of(jobs: Sequence[Sequence[str]]) -> list[list[str]]:
    """The sweep's cells: its jobs' overrides without ``seed=``, each once, in sweep order."""
    cells: dict[tuple[str, ...], list[str]] = {}
    for job in jobs:
        cell = [o for o in job if not o.startswith("seed=")]
        cells.setdefault(tuple(cell), cell)
    return list(cells.values())


class TransferSweeper(Sweeper):
    """Hydra's ``BasicSweeper`` (held, not subclassed: Hydra's plugin scan re-executes its module, so the class a
    subclass would name is not the one ``BasicSweeper.__init__`` checks against), plus the adaptive-seed mode."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__()
        self.basic = importlib.import_module(BASIC).BasicSweeper(max_batch_size, params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # the launcher composes each job through the compositions preflight shares (benchmark.sweep_jobs)
        shared = HydraContext(sweep_jobs.SharedCompositions(hydra_context.config_loader), hydra_context.callbacks)
        self.basic.setup(hydra_context=shared, task_function=task_function, config=config)
        self.config, self.hydra_context, self.launcher = config, hydra_context, self.basic.launcher

    def sweep(self, arguments: list[str]) -> Any:
        design = design_of(self.config)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = self.basic._parse_config() + list(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if design is None:
            return self._fixed(self.basic.split_arguments(parser.parse_overrides(params), self.basic.max_batch_size))
        jobs = self.basic.split_arguments(parser.parse_overrides(params), None)[0]
        cells = cells_of(jobs)
        state = sweep.find_state(sweep_dir)
        if state is None:
            raise RuntimeError(f"adaptive seeds need the sweep state in {sweep_dir} (the sweep callback writes it)")
        log.info("adaptive seeds: %d cells, looks %s", len(cells), list(design.looks))
        launched: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(cells))}  # cell -> (seed, job num)
        want = {i: design.min_seeds for i in range(len(cells))}
        returns: list[Sequence[JobReturn]] = []
        job_num, next_seed = 0, dict.fromkeys(want, 0)
        observed: dict[int, tuple[str, list[float]] | None] = dict.fromkeys(want, (state.metric, []))
        while True:
            batch, owners = [], []
            for i, cell in enumerate(cells):
                n_deltas = len(observed[i][1]) if observed[i] is not None else len(launched[i])
                missing = want[i] - n_deltas
                while missing > 0 and next_seed[i] < 2 * design.max_seeds:  # failed seeds are replaced, within bounds
                    batch.append([*cell, f"seed={next_seed[i]}"])
                    owners.append((i, next_seed[i]))
                    next_seed[i] += 1
                    missing -= 1
            if not batch:
                break
            results = self._launch(batch, job_num)
            for (i, seed), n in zip(owners, range(job_num, job_num + len(batch)), strict=True):
                launched[i].append((seed, n))
            job_num += len(batch)
            returns.append(results)
            observed = self._observed(state, cells, launched)  # read once per round, used by the plan and the batch
            want = self._plan(design, observed, want)
        for results in returns:
            for r in results:
                _ = r.return_value  # a failed job raises here, as in the basic sweeper: the sweep exits 1
        return returns

    def _fixed(self, batches: list[list[list[str]]]) -> list[Sequence[JobReturn]]:
        """Hydra's basic sweep: batch after batch (``max_batch_size``), a failed job raising after its batch."""
        returns: list[Sequence[JobReturn]] = []
        job_num = 0
        for batch in batches:
            results = self._launch(batch, job_num)
            for r in results:
                _ = r.return_value  # a failed job raises here, as in the basic sweeper: the sweep exits 1
            job_num += len(batch)
            returns.append(results)
        return returns

    def _launch(self, batch: list[list[str]], first_num: int) -> list[JobReturn]:
        """Launch the jobs of ``batch`` (job numbers ``first_num``...) that are not done yet; the done ones are
        recorded here without Hydra (``benchmark.reuse``). Jobs keep their numbers, so the jobs to launch go to the
        launcher in runs of consecutive numbers (a parallel launcher runs one run at a time)."""
        state = sweep.find_state(Path(self.config.hydra.sweep.dir))
        done = reuse.find_done(state, batch, str(self.config.get("rerun", config_defaults.RERUN))) if state else {}
        todo = [i for i in range(len(batch)) if i not in done]
        check_composes([batch[i] for i in todo])  # before any job of the batch runs
        if state:
            reuse.record(state, first_num, done, len(batch))
        results = {i: JobReturn(overrides=d.overrides, status=JobStatus.COMPLETED, _return_value=d.objective)
                   for i, d in done.items()}  # fmt: skip
        if state and todo:  # a parallel launcher's workers pretrain the sources first, side by side
            sources_first.pretrain_in_pool(self.launcher, [sweep_jobs.sweep_job(batch[i]) for i in todo], self.config,
                                           state)  # fmt: skip
        for run in consecutive(todo):
            launched = self.launcher.launch([batch[i] for i in run], initial_job_idx=first_num + run[0])
            results.update(zip(run, launched, strict=True))
        return [results[i] for i in range(len(batch))]

    @staticmethod
    def _observed(state: sweep.SweepState, cells: list[list[str]],
                  launched: dict[int, list[tuple[int, int]]]) -> dict[int, tuple[str, list[float]] | None]:  # fmt: skip
        """Each cell's verdict metric and deltas in seed order (None: a baseline cell, no deltas), read from its
        jobs' records and runs."""
        client = tracking.open_store(state.tracking_uri)
        out: dict[int, tuple[str, list[float]] | None] = {}
        for i in range(len(cells)):
            metric, deltas, baseline = state.metric, [], False
            for _, num in sorted(launched[i]):
                record = sweep.read_record(state, num)
                if record is None or record.get("status") != "ok":
                    continue
                if record.get("role") == "baseline":
                    baseline = True
                    break
                run = client.get_run(record["run_id"])
                metric = run.data.tags.get("metric") or state.metric
                value = run.data.metrics.get(f"delta/{metric}")
                if value is not None:
                    deltas.append(value)
            out[i] = None if baseline else (metric, deltas)
        return out

    @staticmethod
    def _plan(design: sequential.SequentialDesign, observed: dict[int, tuple[str, list[float]] | None],
              want: dict[int, int]) -> dict[int, int]:  # fmt: skip
        """The deltas each cell should have after the next round: the transfer cells of one verdict metric are one
        family (Holm across them, as in the sweep's verdicts); baseline cells keep what they have."""
        plan = dict(want)
        for metric in {o[0] for o in observed.values() if o is not None}:
            family = {i: o[1] for i, o in observed.items() if o is not None and o[0] == metric}
            plan.update(sequential.plan_next_round(family, design, metric))
        return plan


def check_composes(batch: list[list[str]]) -> None:
    """Hydra's ``validate_batch_is_legal``: every job of ``batch`` composes, or the sweep stops before any of them
    runs, with Hydra's error. Through ``sweep_jobs.job_config``, which shares each set of group choices' composition
    with preflight (Hydra's own check composes every job again: 0.1 s a job, 4 s for the quickstart's 40)."""
    for overrides in batch:
        sweep_jobs.job_config(overrides)


def consecutive(indices: list[int]) -> list[list[int]]:
    """``[0, 1, 3, 4, 7]`` -> ``[[0, 1], [3, 4], [7]]``: runs of consecutive numbers, in order."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


PLUGIN_MODULE = "hydra_plugins.transfer_bench"
TransferSweeper.__module__ = PLUGIN_MODULE  # the name Hydra's plugin check accepts (module docstring)


def register() -> None:
    """Make ``hydra_plugins.transfer_bench.TransferSweeper`` importable and known to Hydra (idempotent)."""
    module = sys.modules.setdefault(PLUGIN_MODULE, types.ModuleType(PLUGIN_MODULE, "benchmark.sweeper, for Hydra"))
    module.TransferSweeper = TransferSweeper
    hydra_plugins.transfer_bench = module
    Plugins.instance().register(TransferSweeper)
