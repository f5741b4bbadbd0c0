"""Run specs: the typed objects a job is made of (source, job, context, outcome). No behaviour beyond naming and
tagging; ``benchmark.compose`` builds them from the Hydra config and ``benchmark.job`` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from benchmark import config_defaults, provenance
from benchmark.augment import Augment
from benchmark.data import Preprocessing
from benchmark.lineage import Lineage
from benchmark.search_space import Tuning
from benchmark.sources.weights import SourceWeights
from benchmark.strategies.base import TransferStrategy
from benchmark.strategies.evaluation import EvaluationProtocol
from benchmark.strategies.meta import StrategyMeta
from benchmark.targets.base import Target
from benchmark.train import Budget, TrainerSettings


@dataclass(frozen=True)
class SourceSpec:
    """Everything that defines a source: its id, architecture, preprocessing and weights (a weights kind)."""

    id: str
    arch: str
    preprocessing: Preprocessing
    weights: SourceWeights
    model_kwargs: dict[str, Any] = field(default_factory=dict)


RERUN = ("none", "failed", "all")
"""``rerun=`` choices, what a job trains again although a run of its key exists (docs/how-to/resume-and-outages.md):

* ``none``: a FINISHED run of the key is reused; a key without one is trained (a FAILED/KILLED run that left a
  checkpoint resumes in place, as the same MLflow run);
* ``failed``: as ``none``, but an unfinished key always starts a new run from scratch (no checkpoint resume);
* ``all``: every run the sweep needs (its jobs, their baselines and references) is trained again as a new run, once
  per sweep: a FINISHED run is reused only when this sweep made it. Old runs are kept; the newest FINISHED run of a
  key is the one reused and paired afterwards."""


def check_rerun(value: object) -> str:
    """``value`` when it is a ``rerun`` choice; else a ValueError naming it and the choices."""
    if value not in RERUN:
        raise ValueError(f"rerun={value!r} is not a valid choice; choose one of: {', '.join(RERUN)}")
    return str(value)


@dataclass
class Context:
    """Where a job records: the client, experiment, the sweep's parent run and the shared cache; ``rerun`` is the
    reuse policy (``RERUN``); ``git_sha`` the commit of the code this process runs; ``lineage`` what runs record
    beyond tags, params and metrics (logged models, system metrics: ``tracking.*``)."""

    client: MlflowClient
    experiment_id: str
    cache_dir: Path
    parent_run_id: str | None = None
    sweep_id: str | None = None
    git_sha: str = field(default_factory=provenance.git_sha)
    rerun: str = config_defaults.RERUN
    lineage: Lineage = field(default_factory=Lineage)


@dataclass
class JobSpec:
    """A fully built job: typed objects only (``benchmark.compose`` builds it from the Hydra config)."""

    source: SourceSpec
    target_id: str
    target: Target
    target_config: dict[str, Any]
    strategy_id: str
    strategy: TransferStrategy | EvaluationProtocol
    meta: StrategyMeta
    seed: int
    label_budget: int | None
    budget: Budget
    trainer: TrainerSettings
    selection: str
    run_key: str
    baseline_key: str | None
    cell_key: str = ""  # the run key without the seed: the runs of one cell (benchmark.identity)
    variant: str = ""  # what tells the cell apart from its source/target/strategy defaults, e.g. "frozen_stages=1"
    params: dict[str, str] = field(default_factory=dict)
    config_yaml: str = ""
    baseline: JobSpec | None = None
    reference: JobSpec | None = None  # a second comparison run (source_only for domain adaptation)
    scores: bool = True  # log the pair's transferability and similarity scores on transfer runs
    augment: Augment = field(default_factory=Augment)  # training augmentation, the same for the pair's runs
    validation: str = "full"  # the examples that score selection and the objective (benchmark.data.VALIDATION)
    tuning: Tuning = field(default_factory=Tuning)  # the cell's study settings and space (trials 0: none)
    strategy_settings: dict[str, Any] = field(default_factory=dict)  # _target_ and arguments: rebuilt per trial
    trial: int | None = None  # this run is trial i of the study ``tuning_key`` (role=trial), not a seed of a cell
    tuning_key: str = ""  # the study of a trial or a tuned run: the cell key of the tuned cell

    @property
    def selection_criterion(self) -> str:
        """What scores this run's trials (``benchmark.search_space.CRITERIA``)."""
        return self.tuning.criterion(getattr(self.strategy, "data", "labelled"))

    @property
    def data_seed(self) -> int:
        """The seed of the label subset and of the validation examples: the run seed, except for a trial, which
        draws them from the study's ``tuning.trial_seed``: every trial of a study sees the same labelled and
        validation examples and varies only initialisation and data order (its run seed), so a study compares its
        values, not label subsets."""
        return self.tuning.trial_seed if self.trial is not None else self.seed

    @property
    def is_baseline(self) -> bool:
        return self.meta.is_baseline

    @property
    def shares_architecture_only(self) -> bool:
        """Runs that ignore the source's weights are identified by its architecture, not its id."""
        return not self.meta.uses_source_weights

    @property
    def source_tag(self) -> str:
        """Baselines ignore the source's weights and are shared by every source of the same architecture."""
        return f"scratch:{self.source.arch}" if self.shares_architecture_only else self.source.id

    @property
    def budget_tag(self) -> str:
        return "all" if self.label_budget is None else str(self.label_budget)

    @property
    def name(self) -> str:
        src = self.source.arch if self.shares_architecture_only else self.source.id
        return f"{src}__{self.target_id}__{self.strategy_id}__n{self.budget_tag}__s{self.seed}"

    @property
    def cell(self) -> tuple[str, str, str, str]:
        return (self.source_tag, self.target_id, self.strategy_id, self.budget_tag)

    def tags(self, ctx: Context) -> dict[str, str]:
        tags = {
            "source": self.source_tag,
            "target": self.target_id,
            "strategy": self.strategy_id,
            "seed": str(self.seed),
            "label_budget": self.budget_tag,
            "arch": self.source.arch,
            "weights": "none" if self.shares_architecture_only else self.source.weights.kind,
            "role": self.meta.role,
            "run_key": self.run_key,
            "cell_key": self.cell_key,
            "variant": self.variant,
            **provenance.versions(),
            "git_sha": ctx.git_sha,
        }
        if self.baseline_key:
            tags["baseline_key"] = self.baseline_key
        if self.reference is not None:
            tags["reference_key"] = self.reference.run_key
            tags["reference_strategy"] = self.reference.strategy_id
        if self.meta.metric:
            tags["metric"] = self.meta.metric
        if self.validation != "full":  # the default leaves the tags of every run as they were
            tags["validation"] = self.validation
        if self.tuning.active:
            criterion = self.selection_criterion
            tags.update({"tuning_key": self.tuning_key or self.cell_key, "tuning_select": criterion})
            tags.update({"role": "trial", "trial": str(self.trial)} if self.trial is not None else {"tuned": "true"})
            if criterion.endswith("oracle"):
                tags["selection_oracle"] = "true"
        if ctx.sweep_id:
            tags["sweep_id"] = ctx.sweep_id
        return tags


@dataclass
class JobOutcome:
    run_id: str
    reused: bool
    baseline_run_id: str | None = None
    baseline_reused: bool | None = None
    reference_run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, float] = field(default_factory=dict)
