"""A cell's tuning study (docs/tutorials/tuning.md): K trials drawn by Optuna from the cell's space, each an MLflow
run of its own, scored on selection data only; the best trial's values are what the cell's seeds then train with.

DomainBed's protocol with matched baselines: a transfer run, its baseline and its reference each get a study of the
same K over the same shared space (``benchmark.search_space``), so no side of a pair is tuned more than the other.
A study is keyed by the tuned cell's key (everything that identifies the cell, tuning settings included, but not the
seed), so every transfer cell that shares a baseline shares the baseline's study, run once under a lock.

Trials are ordinary runs for reuse (``role=trial``, run key = study key, trial index and values), never seeds of the
cell (their run seeds are ``tuning.trial_seed + i``, which preflight keeps apart from the sweep's seeds). Trial i's
values are drawn by a sampler seeded with (``tuning.seed``, i) from a study rebuilt from trials 0..i-1's values and
objectives, so a rerun draws the same values, reuses every finished trial and trains only what is missing. A trial
never runs the test split (``benchmark.recipe``) and its objective is ``val/selected_acc`` on its selection data.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hydra.utils import instantiate

from benchmark import tracking
from benchmark.data import seed_hash
from benchmark.search_space import Dimension
from benchmark.spec import Context, JobOutcome, JobSpec
from benchmark.train import SELECTED_VAL
from benchmark.util import file_lock, stable_hash

log = logging.getLogger(__name__)


@dataclass
class Choice:
    """A study's outcome: the best trial's values, its objective, and what the study cost."""

    values: dict[str, Any]
    objective: float
    trials: int
    seconds: float
    trained: int = 0  # trials trained now (the others were reused)
    objectives: list[float | None] = field(default_factory=list)  # per trial; None for a failed one
    edges: list[str] = field(default_factory=list)  # chosen values at the edge of their dimension (at_edge)

    def metrics(self) -> dict[str, float]:
        return {"tuning/trials": float(self.trials), "tuning/seconds": self.seconds,
                "tuning/best_objective": self.objective}  # fmt: skip


def tune(job: JobSpec, ctx: Context, ensure: Callable[[JobSpec, Context], JobOutcome]) -> Choice:
    """Run (or resume) the study of ``job``'s cell; ``ensure`` reuses or trains one trial (``benchmark.job``)."""
    import optuna  # optional extra (`tuning`): only a sweep with tuning.trials > 0 needs it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings, key = job.tuning, job.cell_key
    dims = {d.name: d.distribution() for d in settings.space}
    done: list[tuple[dict[str, Any], float | None]] = []
    seconds, trained = 0.0, 0
    with file_lock(ctx.cache_dir / "locks" / f"tuning-{key}.lock"):
        for i in range(settings.trials):
            study = optuna.create_study(direction="maximize", sampler=sampler(settings.sampler, settings.seed, i))
            for values, objective in done:
                state = optuna.trial.TrialState.COMPLETE if objective is not None else optuna.trial.TrialState.FAIL
                with warnings.catch_warnings():  # optuna 2.x marks add_trial/create_trial experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.add_trial(optuna.trial.create_trial(params=values, distributions=dims, value=objective,
                                                              state=state))  # fmt: skip
            values = dict(study.ask(dims).params) if dims else {}
            trial = trial_job(job, i, values)
            t0 = time.perf_counter()
            try:
                outcome = ensure(trial, ctx)
            except Exception as exc:  # the trial's run is FAILED with its traceback; the study goes on without it
                log.warning("trial %d of study %s failed: %s", i, key, exc)
                done.append((values, None))
                seconds += time.perf_counter() - t0
                trained += 1
                continue
            trained += not outcome.reused
            objective = outcome.metrics.get(SELECTED_VAL)
            if objective is not None and not math.isfinite(objective):
                objective = None
            done.append((values, objective))
            seconds += outcome.metrics.get("time/total_s", time.perf_counter() - t0)
    scored = [(obj, -i) for i, (_, obj) in enumerate(done) if obj is not None]
    if not scored:
        raise RuntimeError(f"every one of the {settings.trials} trials of study {key} ({job.name}) failed")
    best, neg_i = max(scored)  # ties: the earliest trial
    log.info("study %s: trial %d of %d chosen (%s=%.4f): %s", key, -neg_i, settings.trials, SELECTED_VAL, best,
             done[-neg_i][0])  # fmt: skip
    values = done[-neg_i][0]
    edges = [f"{d.name}={values[d.name]}" for d in settings.space if d.name in values and at_edge(d, values[d.name])]
    return Choice(values, best, settings.trials, seconds, trained, [obj for _, obj in done], edges)


def at_edge(dim: Dimension, value: Any) -> bool:
    """Whether a chosen value lies at the edge of its dimension: the smallest or largest of numeric choices, or
    within the outer 5% of an interval (on its log scale when it is searched on one). A study whose best value is
    at the edge may have a better one outside its space (the report flags it)."""
    if dim.choices is not None:
        numbers = [c for c in dim.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        return len(numbers) == len(dim.choices) > 1 and value in (min(numbers), max(numbers))
    scale = math.log if dim.log else float
    low, high, x = scale(dim.low), scale(dim.high), scale(float(value))
    return high > low and not 0.05 < (x - low) / (high - low) < 0.95


def sampler(name: str, seed: int, i: int) -> Any:
    """The sampler that draws trial ``i``: seeded by (``tuning.seed``, i), so a rerun draws the same values."""
    import optuna  # optional extra, as in ``tune``

    s = seed_hash("tuning_sampler", seed, i) % 2**31
    return optuna.samplers.TPESampler(seed=s) if name == "tpe" else optuna.samplers.RandomSampler(seed=s)


def with_values(job: JobSpec, values: dict[str, Any]) -> JobSpec:
    """``job`` with searched values applied: ``budget.*`` to its budget, ``strategy.*`` to a strategy rebuilt from
    its settings; the MLflow params say the values it trains with."""
    budget_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("budget.")}
    strategy_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("strategy.")}
    opt_fields = set(type(job.budget.optimization).__dataclass_fields__)
    optimization = replace(job.budget.optimization, **{k: v for k, v in budget_values.items() if k in opt_fields})
    budget = replace(job.budget, optimization=optimization,
                     **{k: v for k, v in budget_values.items() if k not in opt_fields})  # fmt: skip
    strategy = job.strategy
    if strategy_values:
        strategy = instantiate({**job.strategy_settings, **strategy_values})
    params = dict(job.params)
    for name, v in values.items():
        params[name.replace(".", "/")] = str(v)
    return replace(job, budget=budget, strategy=strategy, params=params)


def trial_job(job: JobSpec, i: int, values: dict[str, Any]) -> JobSpec:
    """Trial ``i`` of ``job``'s study: the job with ``values``, run seed ``trial_seed + i``, selection data only
    (``validation=budget`` on the target, or the source's validation split: ``JobSpec.selection_criterion``), no
    baseline, no reference, no scores."""
    out = with_values(job, values)
    # "data": the study's one label subset (``JobSpec.data_seed``), not trial i's own as before it existed
    key = stable_hash({"tuning_key": job.cell_key, "trial": i, "values": values, "data": "study"})
    params = {**out.params, "seed": str(job.tuning.trial_seed + i), "validation": "budget",
              "tuning_select": job.selection_criterion}  # fmt: skip
    params.update({f"trial.{k}": str(v) for k, v in values.items()})
    return replace(out, seed=job.tuning.trial_seed + i, run_key=key, tuning_key=job.cell_key, trial=i,
                   validation="budget", baseline=None, reference=None, baseline_key=None, scores=False,
                   params=params, config_yaml="")  # fmt: skip


def tuned_job(job: JobSpec, choice: Choice) -> JobSpec:
    """The cell's run with the chosen values, on its own seed and keys (the tuning settings are in them)."""
    out = with_values(job, choice.values)
    params = {**out.params, "tuning_select": job.selection_criterion,
              **{f"tuned.{k}": str(v) for k, v in choice.values.items()}}  # fmt: skip
    if choice.edges:
        params["tuning_edge"] = "; ".join(choice.edges)
    return replace(out, tuning_key=job.cell_key, params=params)


def ensure_tuned(job: JobSpec, ctx: Context, ensure: Callable[[JobSpec, Context], JobOutcome]) -> JobOutcome:
    """Tune the job's cell (reusing finished trials), then reuse or train the job's run with the chosen values; a
    run trained now records the study's cost (``tuning/trials``, ``tuning/seconds``)."""
    choice = tune(job, ctx, ensure)
    outcome = ensure(tuned_job(job, choice), ctx)
    if not outcome.reused:
        tracking.log_metrics(ctx.client, outcome.run_id, choice.metrics())
        outcome.metrics.update(choice.metrics())
    return outcome
