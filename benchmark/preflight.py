"""Preflight: every job of a sweep composed and validated before anything trains; every problem reported at once,
each with the jobs it affects. Warnings (a hub source fed other inputs than its model's data config) are logged
with the jobs they affect and stop nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # private: pyproject pins hydra-core below 1.4
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmark import config_defaults, metrics
from benchmark.compose import (
    build_budget,
    build_job,
    build_lineage,
    build_strategy,
    build_trainer,
    build_tuning_for,
    build_weights,
    preprocessing_warnings,
    raw,
)
from benchmark.devices import gpu_problems
from benchmark.identity import CONVERGED_ONLY
from benchmark.probe_solver import solved_probe
from benchmark.recipe import data_problems
from benchmark.spec import check_rerun
from benchmark.splits import load_splits
from benchmark.sweep_jobs import job_config, sweep_job
from benchmark.train import SELECTED_VAL

log = logging.getLogger(__name__)


ENUMERATING = (
    "hydra_plugins.transfer_bench.TransferSweeper",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
)
"""Sweepers that launch exactly the combinations of the swept values (the app's own, Hydra's basic one)."""


def enumerates(config: DictConfig) -> bool:
    """Whether the sweep's jobs are the combinations of its swept values. A tuning sweeper (Optuna's, Nevergrad's)
    picks values itself, trial by trial: preflight can only check what it could pick (``sweep_overrides``)."""
    return config.hydra.sweeper.get("_target_") in ENUMERATING


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper would launch (sweeper params, then the command line).

    For a sweeper that picks its own values (``enumerates`` is false) an interval, which the basic sweeper cannot
    split, stands for its two ends: the jobs are every choice with every interval's bounds, the values a study can
    reach, not the trials it will run."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(params + list(config.hydra.overrides.task))
    if not enumerates(config):
        parsed = [_interval_ends(parser, o) if o.is_interval_sweep() else o for o in parsed]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def objective_problems(config: DictConfig) -> list[str]:
    """A tuning sweeper told to optimise the job's objective (``val/selected_acc``, ``benchmark.run.run_job``) in
    the wrong direction would select the worst trial: its ``direction`` must match the metric schema's."""
    direction = config.hydra.sweeper.get("direction")
    if enumerates(config) or direction is None:
        return []
    want = "maximize" if metrics.get(SELECTED_VAL).higher_is_better else "minimize"
    got = [str(d).lower() for d in (direction if OmegaConf.is_list(direction) else [direction])]
    if got == [want]:
        return []
    return [
        f"hydra.sweeper.direction={direction!r}, but every job returns {SELECTED_VAL} (one objective, "
        f"{'higher' if want == 'maximize' else 'lower'} is better): set hydra.sweeper.direction={want}"
    ]


def _interval_ends(parser: OverridesParser, override: Override) -> Override:
    """``key=interval(a, b)`` (tags dropped: ``log`` only changes how a study samples) as ``key=a,b``."""
    sweep = override.value()
    ends = [int(v) if isinstance(v, float) and v.is_integer() else v for v in (sweep.start, sweep.end)]
    return parser.parse_override(f"{override.get_key_element()}={ends[0]!r},{ends[1]!r}")


def check_data(target_id: str, target: Any, target_config: dict, budget: int | None) -> list[str]:
    """Load the target (corrupt files, unreadable datasets surface here, before any job) and check the label
    budget against its smallest training class. Loaded data stay cached for the jobs of this process."""
    if target.problems():
        return []  # reported by build_job already
    splits = load_splits(target_id, target, target_config)
    if budget is None:
        return []
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    if budget <= counts.min():
        return []
    small = [splits.classes[i] for i in np.flatnonzero(counts < budget)][:5]
    return [
        f"label_budget={budget} per class exceeds the training examples of target {target_id!r} (smallest class "
        f"has {counts.min()}; too small: {small}); choose label_budget <= {counts.min()} or null (all)"
    ]


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).split(" Config search path:")[0]  # Hydra appends its search path
    return f"{type(exc).__name__}: {text}"


def rerun_problems(cfg: DictConfig) -> list[str]:
    """``rerun=`` must be a choice; ``check_rerun`` raises, naming the bad value and the choices."""
    check_rerun(cfg.get("rerun", config_defaults.RERUN))
    return []


def weights_problems(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """What the source's weights kind reports for the way the job's strategy uses it (built on their own, so a bad
    architecture does not hide missing weights)."""
    _, meta = build_strategy(choices["strategy"], cfg.strategy)
    weights = build_weights(choices["source"], cfg.source.get("weights"), choices.get("target@source.weights.dataset"))
    return weights.problems(meta.uses_source_weights)


def job_problems(cfg: DictConfig, choices: dict[str, str], overrides: Sequence[str] | None = None) -> list[str]:
    """Independent checks of one composed job, so that one bad value does not hide another: the reuse policy, what
    runs record (``tracking.log_models``...), the typed job (sources, strategies, targets) with what it trains on,
    its weights (a missing file, weights not in the offline cache), the label budget against the data. With the
    job's ``overrides`` the typed job is kept for the sweeper (``benchmark.sweep_jobs.sweep_job``)."""
    checks = [
        lambda: rerun_problems(cfg),
        lambda: build_lineage(cfg.tracking) and [],
        lambda: data_problems(build_job(cfg, choices) if overrides is None else sweep_job(overrides, cfg)),
        lambda: weights_problems(cfg, choices),
        lambda: gpu_problems(build_trainer(cfg.trainer), OmegaConf.select(cfg, "hydra.launcher._target_")),
        lambda: check_data(
            choices["target"], instantiate(cfg.target), raw(cfg.target),
            None if cfg.label_budget is None else int(cfg.label_budget),
        ),
    ]  # fmt: skip
    problems: list[str] = []
    for check in checks:
        try:
            problems += check()
        except Exception as exc:  # every kind of bad input, reported together
            problems.append(describe(exc))
    return problems


def job_warnings(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """What deserves a look but stops nothing: preprocessing that differs from the model's data config, a searched
    budget value that cannot change the job's recipe. A job that cannot be built is a problem already
    (``job_problems``), so it gives no warning here."""
    try:
        return preprocessing_warnings(choices["source"], cfg.source) + search_warnings(cfg, choices)
    except Exception:  # reported by job_problems
        return []


def search_warnings(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """Searched ``budget.*`` values of a tuning study that give this cell one and the same recipe: the training
    length (``epochs``, ``min_steps``, ``steps``) when every value of the dimension plans the same optimiser steps
    for the cell's training set (``epochs`` at 5 labels per class: ``min_steps`` decides), and the converged rule's
    settings under ``budget.mode=fixed``. Each names the cell and what to search instead."""
    tuning = build_tuning_for(cfg, choices["strategy"], cfg.strategy)
    if not tuning.active:
        return []
    strategy, _ = build_strategy(choices["strategy"], cfg.strategy)
    if solved_probe(strategy) is not None and strategy.frozen_backbone:
        searched = [d.name for d in tuning.space if d.name.startswith("budget.")]
        cell = f"cell {choices['target']}/{choices['strategy']}"
        return [f"tuning.space {', '.join(searched)} cannot change {cell}: its probe is solved (no optimiser step) "
                "and chooses its L2 strength on validation itself; use tuning.trials=0 for it, or "
                "strategy.probe.head=sgd to tune a trained head"] if searched else []  # fmt: skip
    budget = build_budget(cfg.budget)
    label_budget = None if cfg.label_budget is None else int(cfg.label_budget)
    splits = load_splits(choices["target"], instantiate(cfg.target), raw(cfg.target))
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    n_train = int(counts.sum() if label_budget is None else np.minimum(counts, label_budget).sum())
    cell = f"cell {choices['target']}/{choices['strategy']}/{label_budget or 'all'} labels per class"
    out = []
    for dim in tuning.space:
        if not dim.name.startswith("budget.") or dim.key not in LENGTH + CONVERGED_ONLY:
            continue
        if dim.key in CONVERGED_ONLY and not budget.converges:
            out.append(f"tuning.space {dim.name} cannot change {cell}: budget.mode=fixed never reads it (search "
                       "budget.steps, or set budget.mode=converged)")  # fmt: skip
            continue
        if dim.key not in LENGTH:
            continue
        values = dim.choices if dim.choices is not None else (dim.low, dim.high)
        plans = {replace(budget, **{dim.key: type(getattr(budget, dim.key))(v)}).plan(n_train)[1] for v in values}
        if len(plans) == 1:
            out.append(f"tuning.space {dim.name} {list(values)} cannot change {cell}: every value trains "
                       f"{plans.pop()} steps on its {n_train} examples (search budget.steps instead)")  # fmt: skip
    return out


LENGTH = ("epochs", "min_steps", "steps")
"""The budget fields that set the training length (``Budget.plan``)."""


def preflight(config: DictConfig, warnings: list[str] | None = None) -> list[str]:
    """Compose and validate every job of the sweep; return every problem, each with the jobs it affects. Warnings
    are logged (and appended to ``warnings`` when given) in the same form."""
    found: dict[str, list[str]] = {p: ["the sweeper's settings"] for p in objective_problems(config)}
    warned: dict[str, list[str]] = {}
    for overrides in sweep_overrides(config):
        label = " ".join(o for o in overrides if not o.startswith(("hydra", "tracking.", "cache_dir")))
        problems: list[str] = []
        try:
            cfg = job_config(overrides)  # the composition shared by jobs of the same group choices
            HydraConfig.instance().set_config(cfg)
            choices = dict(cfg.hydra.runtime.choices)
        except Exception as exc:  # unknown option or malformed override: nothing else can be checked
            problems.append(describe(exc))
        else:
            problems += job_problems(cfg, choices, overrides)
            for w in job_warnings(cfg, choices):
                warned.setdefault(w, []).append(label)
        for p in problems:
            found.setdefault(p, []).append(label)
    HydraConfig.instance().set_config(config)
    if not enumerates(config):
        log.warning(
            "preflight: hydra.sweeper is %s, which picks the values of its trials itself: preflight checked every "
            "choice with both ends of every interval (%d jobs), not the trials it will run; a trial returns its "
            "val/selected_acc (README \"Tuning\")", config.hydra.sweeper.get("_target_"), len(sweep_overrides(config)),
        )  # fmt: skip
    for line in _with_jobs(warned):
        log.warning("preflight: %s", line)
        if warnings is not None:
            warnings.append(line)
    return _with_jobs(found)


def _with_jobs(found: dict[str, list[str]]) -> list[str]:
    lines = []
    for problem, labels in found.items():
        where = labels[0] + (f" (+{len(labels) - 1} more jobs)" if len(labels) > 1 else "")
        lines.append(f"{problem}\n      in: {where}")
    return lines
