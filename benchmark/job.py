"""One sweep job: ensure the source weights and the matched baseline, then train (or reuse) the run, then deltas.

Identity and reuse follow DomainBed's "done" files, kept in MLflow: a FINISHED run whose ``run_key`` tag equals the
job's key is never recomputed. A transfer job whose baseline (``baseline_key``) has no FINISHED run trains it first,
under a file lock, so parallel jobs train each baseline once and every later job (even in another sweep) reuses it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import TensorDataset

from benchmark import provenance, tracking
from benchmark.callbacks import Diverged, RunWatch
from benchmark.data import Splits, label_subset, seed_hash, unlabelled
from benchmark.features import cached_split_features, file_digest
from benchmark.metrics import DELTA_METRICS
from benchmark.sources.models import (
    FileWeights,
    NoWeights,
    PretrainWeights,
    SourceSpec,
    build_model,
    load_source_weights,
)
from benchmark.strategies.base import TransferStrategy
from benchmark.targets.base import Target
from benchmark.train import Budget, TrainerSettings, fit_and_test
from benchmark.util import file_lock, stable_hash

log = logging.getLogger(__name__)


RERUN = ("none", "failed", "all")
"""``rerun=`` choices, what a job trains again although a run of its key exists (README "Sweeps that survive"):

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
    reuse policy (``RERUN``); ``git_sha`` the commit of the code this process runs."""

    client: MlflowClient
    experiment_id: str
    cache_dir: Path
    parent_run_id: str | None = None
    sweep_id: str | None = None
    git_sha: str = field(default_factory=provenance.git_sha)
    rerun: str = "none"


@dataclass
class JobSpec:
    """A fully built job: typed objects only (``benchmark.run`` builds it from the Hydra config)."""

    source: SourceSpec
    target_id: str
    target: Target
    target_config: dict[str, Any]
    strategy_id: str
    strategy: TransferStrategy
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

    @property
    def is_baseline(self) -> bool:
        return self.strategy.role == "baseline"

    @property
    def shares_architecture_only(self) -> bool:
        """Runs that ignore the source's weights are identified by its architecture, not its id."""
        return not self.strategy.uses_pretrained

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
            "role": self.strategy.role,
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
        if self.strategy.metric:
            tags["metric"] = self.strategy.metric
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


_SPLITS_CACHE: dict[str, Splits] = {}


def load_splits(target_id: str, target: Target, config: dict[str, Any]) -> Splits:
    """``target.load()``, memoised per configuration: a sweep's jobs in one process decode/render data once."""
    key = stable_hash({"id": target_id, "config": config})
    if key not in _SPLITS_CACHE:
        t0 = time.perf_counter()
        _SPLITS_CACHE[key] = target.load()
        log.info("loaded target %s in %.2f s", target_id, time.perf_counter() - t0)
    return _SPLITS_CACHE[key]


def execute(job: JobSpec, ctx: Context) -> JobOutcome:
    """Run one job: its baseline first (transfer jobs), then the job itself, then its deltas."""
    baseline = None
    if job.baseline is not None:
        baseline = ensure_run(job.baseline, ctx)
    reference = None
    if job.reference is not None:
        reference = execute(job.reference, ctx)  # a transfer job of its own: its baseline is this job's
    outcome = ensure_run(job, ctx)
    if baseline is not None:
        outcome.baseline_run_id = baseline.run_id
        outcome.baseline_reused = baseline.reused
        outcome.deltas = log_deltas(ctx.client, outcome.run_id, baseline.run_id)
        flag_provenance(ctx.client, outcome.run_id, baseline.run_id)
    if reference is not None:
        outcome.reference_run_id = reference.run_id
        outcome.deltas.update(log_deltas(ctx.client, outcome.run_id, reference.run_id, prefix="reference"))
    if job.scores and job.strategy.uses_pretrained and not job.is_baseline:
        log_scores(job, ctx, outcome.run_id)
    return outcome


def log_scores(job: JobSpec, ctx: Context, run_id: str) -> dict[str, float]:
    """The pair's transferability and similarity scores as metrics of the transfer run; transferability on the
    labelled examples this run trains on (its label subset), computed once per pair and subset."""
    from benchmark.scoring import pair_scores

    try:
        scores = pair_scores(job, ctx, source_weights_file(job, ctx), labelled_examples(job))
    except Exception as exc:  # a score that cannot be computed must not fail a finished training run
        log.warning("no transferability scores for %s -> %s: %s", job.source.id, job.target_id, exc)
        return {}
    have = ctx.client.get_run(run_id).data.metrics
    missing = {k: v for k, v in scores.items() if have.get(k) != v}
    if missing:
        tracking.log_metrics(ctx.client, run_id, missing)
    return scores


def labelled_examples(job: JobSpec):
    """Indices of the training examples whose labels the job's runs get (its label budget's subset for its seed)."""
    splits = load_splits(job.target_id, job.target, job.target_config)
    return label_subset(splits.train.labels, job.label_budget, job.seed, job.target_id)


def ensure_run(job: JobSpec, ctx: Context) -> JobOutcome:
    """Reuse the FINISHED run with ``job.run_key``, or train it (once, under a lock on the key).

    A FAILED or KILLED run of the same key that left a checkpoint is resumed in place (same MLflow run, its
    curves continue) unless ``ctx.rerun`` asks for a fresh run; otherwise a new run starts from scratch.
    """
    found = reusable_run(job, ctx)
    if found is None:
        with file_lock(ctx.cache_dir / "locks" / f"{job.run_key}.lock"):
            found = reusable_run(job, ctx)
            if found is None:
                return train_run(job, ctx, resumable_run(job, ctx))
    log.info("reusing FINISHED run %s (%s) for key %s", found.info.run_id, found.info.run_name, job.run_key)
    return JobOutcome(found.info.run_id, True, metrics=dict(found.data.metrics))


def reusable_run(job: JobSpec, ctx: Context):
    """The newest FINISHED run of the job's key, if ``ctx.rerun`` lets it be reused (``all``: only one this very
    sweep made, so a baseline several jobs share is trained again once, not once per job)."""
    found = tracking.find_finished(ctx.client, ctx.experiment_id, job.run_key)
    if found is not None and ctx.rerun == "all":
        made_here = ctx.sweep_id is not None and found.data.tags.get("sweep_id") == ctx.sweep_id
        return found if made_here else None
    return found


def checkpoint_path(job: JobSpec, ctx: Context) -> Path:
    return ctx.cache_dir / "checkpoints" / f"{job.run_key}.ckpt"


def resumable_run(job: JobSpec, ctx: Context) -> str | None:
    """The id of an interrupted run of this key whose checkpoint is on disk, or None (always None unless
    ``ctx.rerun`` is ``none``: the other choices ask for a fresh run)."""
    if ctx.rerun != "none":
        return None
    ckpt = checkpoint_path(job, ctx)
    owner = ckpt.with_suffix(".json")
    if not (ckpt.is_file() and owner.is_file()):
        return None
    run_id = json.loads(owner.read_text()).get("run_id")
    try:
        run = ctx.client.get_run(run_id)
    except Exception:  # the store was replaced: the checkpoint belongs to a run that no longer exists
        return None
    if run.info.status in ("FAILED", "KILLED") and run.data.tags.get("run_key") == job.run_key:
        return run_id
    return None


def train_run(
    job: JobSpec, ctx: Context, resume_run_id: str | None = None, watch: RunWatch | None = None
) -> JobOutcome:
    """Create (or reopen) the MLflow run, train and test; a failure leaves a FAILED run (KILLED on Ctrl-C or
    SIGTERM) with its traceback and a ``failure_reason`` tag, then re-raises. ``watch`` observes the run (tests)."""
    ckpt = checkpoint_path(job, ctx)
    if resume_run_id:
        run_id = resume_run_id
        ctx.client.update_run(run_id, status="RUNNING")
        tracking.set_tags(ctx.client, run_id, {**tracking.owner_tags(), "resumed": "true", **_threads_tag()})
        ctx.client.delete_tag(run_id, "failure_reason")
        log.info("resuming %s from %s (MLflow run %s)", job.name, ckpt, run_id)
    else:
        for stale in (ckpt, ckpt.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        tags = {**job.tags(ctx), **_threads_tag()}
        run_id = tracking.create_run(ctx.client, ctx.experiment_id, job.name, tags, ctx.parent_run_id)
        log.info("training %s (MLflow run %s)", job.name, run_id)
    try:
        if not resume_run_id:
            tracking.log_params(ctx.client, run_id, job.params)
            if job.config_yaml:
                ctx.client.log_text(run_id, job.config_yaml, "config.yaml")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.with_suffix(".json").write_text(json.dumps({"run_id": run_id, "name": job.name}))
        metrics = _train(job, ctx, run_id, ckpt, watch)
        tracking.log_metrics(ctx.client, run_id, metrics)
        tracking.end_run(ctx.client, run_id)
        for done in (ckpt, ckpt.with_suffix(".json")):
            done.unlink(missing_ok=True)
    except BaseException as exc:
        if isinstance(exc, Diverged):
            tracking.set_tags(ctx.client, run_id, {"diverged": "true"})
            for stale in (ckpt, ckpt.with_suffix(".json")):  # resuming a diverged run would diverge again
                stale.unlink(missing_ok=True)
        status = tracking.record_failure(ctx.client, run_id, exc)
        log.error("%s ended %s: %s", job.name, status, exc)
        raise
    return JobOutcome(run_id, False, metrics=metrics)


def _threads_tag() -> dict[str, str]:
    """The torch threads this process trains with (``benchmark.run.job_threads``: cores shared among parallel
    jobs); a tag, not a param, since it is no part of the result and a resumed run may get another number."""
    return {"threads": str(torch.get_num_threads())}


def _train(
    job: JobSpec, ctx: Context, run_id: str, resume_checkpoint: Path | None = None, watch: RunWatch | None = None
) -> dict[str, float]:
    t_start = time.perf_counter()
    strategy = job.strategy
    splits = load_splits(job.target_id, job.target, job.target_config)
    subset = label_subset(splits.train.labels, job.label_budget, job.seed, job.target_id)
    prep = job.source.preprocessing
    val, test = prep.apply(splits.val), prep.apply(splits.test)
    source_train = None
    if strategy.data == "adaptation":
        # transductive: the source's labelled data and the target's training images, their labels replaced by -1
        source_splits = adaptation_source(job, splits)
        source_train = prep.apply(source_splits.train)
        ctx.client.log_dict(
            run_id,
            {"unlabelled_target_indices": list(range(len(splits.train))), "source_train_examples": len(source_train)},
            "data/train_indices.json",
        )
    else:
        # the exact examples, so a reader (and tests/test_sweep.py) can verify that a pair trained on the same data
        ctx.client.log_dict(run_id, {"train_indices": subset.tolist()}, "data/train_indices.json")

    pl.seed_everything(seed_hash("model_init", job.seed, strategy.seed_salt) % 2**32, workers=True, verbose=False)
    model = build_model(job.source.arch, splits.num_classes, prep, **job.source.model_kwargs)
    loaded, weights_file = 0, None
    if strategy.uses_pretrained:
        weights_file = source_weights_file(job, ctx)
        loaded = load_source_weights(model, job.source.weights, weights_file)
    if watch is not None:
        watch.on_stage("initial", model, {})
    extra: dict[str, float] = {}
    pdata = pretraining_data(job, ctx, splits)
    pre = strategy.pretrain(model, pdata) if pdata is not None else {}
    if watch is not None:
        watch.on_stage("pretrained", model, dict(pre))
    if pre:
        extra.update(pre)
        tracking.log_metrics(ctx.client, run_id, pre)
    if strategy.data == "none":
        t0 = time.perf_counter()
        metrics = strategy.evaluate(model, splits, subset, prep, job.seed)
        metrics = {**metrics, "time/evaluate_s": time.perf_counter() - t0}
        train_examples = len(subset)
    else:
        weights_id = pdata.key if pdata is not None else None
        metrics, train_examples = _fit(job, ctx, run_id, model, splits, subset, val, test, weights_file, weights_id,
                                       resume_checkpoint, source_train, extra, t_start, watch)  # fmt: skip
    if watch is not None:
        watch.on_stage("end", model, dict(metrics))
    metrics.update(
        {
            "data/train_examples": float(train_examples),
            "data/val_examples": float(len(val)),
            "data/test_examples": float(len(test)),
            "weights/loaded_tensors": float(loaded),
            "time/total_s": time.perf_counter() - t_start,
            "model/params": float(sum(p.numel() for p in model.parameters())),
            **extra,
        }
    )
    metrics.setdefault("time/setup_s", metrics["time/total_s"])
    return metrics


def _fit(job, ctx, run_id, model, splits, subset, val, test, weights_file, weights_id, resume_checkpoint,
         source_train, extra, t_start, watch=None):  # fmt: skip
    prep = job.source.preprocessing
    fit_model, fit_strategy = model, job.strategy
    if job.strategy.frozen_backbone and has_learned_backbone(job) and job.trainer.feature_cache:
        # the backbone is frozen and in eval mode: run it once per example and train the head on its features
        feats = cached_split_features(
            feature_key(job, weights_file, weights_id), ctx.cache_dir, model, prep.apply(splits.train), val, test
        )
        labels = {k: torch.from_numpy(getattr(splits, k).labels) for k in ("train", "val", "test")}
        train = TensorDataset(feats.train[torch.from_numpy(subset)], labels["train"][torch.from_numpy(subset)])
        val, test = TensorDataset(feats.val, labels["val"]), TensorDataset(feats.test, labels["test"])
        fit_model, fit_strategy = model.get_classifier(), TransferStrategy()
        extra.update({"time/feature_extract_s": feats.seconds, "features/cached": 1.0})
    elif source_train is not None:
        train = prep.apply(unlabelled(splits.train))
    else:
        train = prep.apply(splits.train.subset(subset))
    setup_s = time.perf_counter() - t_start

    result = fit_and_test(
        fit_model,
        fit_strategy,
        train,
        val,
        test,
        splits.num_classes,
        job.budget,
        job.trainer,
        job.seed,
        job.selection,
        ctx.client,
        run_id,
        order_salt=job.strategy.seed_salt,
        checkpoint=resume_checkpoint,
        source_train=source_train,
        callbacks=[watch] if watch is not None else None,
    )
    return {**result.metrics, "time/setup_s": setup_s}, len(train)


def has_learned_backbone(job: JobSpec) -> bool:
    """Whether the frozen backbone carries learned weights worth caching features of (source or self-supervised)."""
    return job.strategy.uses_pretrained or job.strategy.pretrain_identity() is not None


def pretraining_data(job: JobSpec, ctx: Context, splits: Splits):
    """The unlabelled images and cache key a strategy's ``pretrain`` hook gets (built lazily, only if it asks)."""
    from benchmark.strategies.base import Pretraining

    ident = job.strategy.pretrain_identity()
    if ident is None:
        return None
    if ident.get("data") == "source":
        images = adaptation_source(job, splits, check_classes=False).train
        data = {"source": job.source.id, "config": job.source.weights.dataset_config}
    else:
        images, data = splits.train, {"id": job.target_id, "config": job.target_config}
    key = stable_hash(
        {
            "arch": job.source.arch,
            "model_kwargs": job.source.model_kwargs,
            "preprocessing": asdict(job.source.preprocessing),
            "data": data,
            "pretraining": ident,
            "seed": job.seed,
        }
    )
    return Pretraining(job.source.preprocessing.apply(unlabelled(images)), job.seed, ctx.cache_dir, key,
                       job.trainer.accelerator)  # fmt: skip


def adaptation_source(job: JobSpec, target_splits: Splits | None = None, check_classes: bool = True) -> Splits:
    """The labelled source data of a domain-adaptation job: the dataset the source was pretrained on, with the
    target's classes in the same order."""
    weights = job.source.weights
    if not isinstance(weights, PretrainWeights):
        raise ValueError(
            f"strategy {job.strategy_id!r} needs the source's labelled data, but source {job.source.id!r} has "
            f"weights.kind={weights.kind!r} (no dataset); use a source with weights.kind=pretrain, whose "
            "weights.dataset is its labelled data (e.g. source=synth_digits)"
        )
    splits = load_splits(weights.dataset_id, weights.dataset, weights.dataset_config)
    if check_classes and target_splits is not None and list(splits.classes) != list(target_splits.classes):
        raise ValueError(
            f"strategy {job.strategy_id!r} adapts source {job.source.id!r} (classes {list(splits.classes)[:12]}) to "
            f"target {job.target_id!r} (classes {list(target_splits.classes)[:12]}): domain adaptation needs the "
            "same classes in the same order; choose a source pretrained on the target's classes"
        )
    return splits


def data_problems(job: JobSpec) -> list[str]:
    """Preflight for what a job trains on: adaptation needs a labelled source dataset with the target's classes
    (and so does self-supervised pretraining on the source's images). A job's reference shares its source and
    target, so the job's own check covers it."""
    adapts = job.strategy.data == "adaptation"
    if not adapts and (job.strategy.pretrain_identity() or {}).get("data") != "source":
        return []
    try:
        splits = load_splits(job.target_id, job.target, job.target_config) if not job.target.problems() else None
        adaptation_source(job, splits, check_classes=adapts)
    except Exception as exc:
        return [f"{type(exc).__name__}: {exc}"]
    return []


def source_weights_file(job: JobSpec, ctx: Context) -> Path | None:
    """The local file of the source's weights: the harness-pretrained checkpoint (trained now if missing) or the
    user's file; None for hub weights (read from the Hugging Face cache by ``load_source_weights``)."""
    weights = job.source.weights
    if isinstance(weights, NoWeights):
        raise ValueError(
            f"strategy {job.strategy_id!r} transfers pretrained weights, but source {job.source.id!r} has "
            "weights.kind=none; use strategy=scratch or a source with hub, file or pretrain weights"
        )
    if isinstance(weights, PretrainWeights):
        from benchmark.sources.pretrain import ensure_pretrained

        return ensure_pretrained(job.source, ctx, job.trainer)
    return getattr(weights, "path", None)


def feature_key(job: JobSpec, weights_file: Path | None, weights_id: str | None = None) -> str:
    """Content address of a pair's frozen features: architecture, preprocessing, weights, target. ``weights_id``
    names weights the strategy trained itself (self-supervised pretraining)."""
    weights = job.source.weights
    if weights_id is not None:
        identity = weights_id
    elif isinstance(weights, PretrainWeights | FileWeights):
        identity = file_digest(Path(weights_file))
    else:
        identity = getattr(weights, "tag", weights.kind)
    return stable_hash(
        {
            "arch": job.source.arch,
            "model_kwargs": job.source.model_kwargs,
            "preprocessing": asdict(job.source.preprocessing),
            "weights": identity,
            "target": {"id": job.target_id, "config": job.target_config},
        }
    )


def log_deltas(client: MlflowClient, run_id: str, baseline_run_id: str, prefix: str = "baseline") -> dict[str, float]:
    """Log ``delta/<metric>`` = transfer − baseline on the transfer run, and link the baseline.

    With ``prefix="reference"`` the comparison run is the strategy's reference (``source_only``): the metrics are
    ``reference_delta/<metric>`` and ``reference/<metric>``, the link the ``reference_run_id`` tag.
    Idempotent: a reused pair whose deltas are already recorded against the same run is not logged again.
    """
    run = client.get_run(run_id)
    base = client.get_run(baseline_run_id)
    delta = "delta" if prefix == "baseline" else f"{prefix}_delta"
    values = {}
    for m in DELTA_METRICS:
        if m in run.data.metrics and m in base.data.metrics:
            values[f"{delta}/{m}"] = run.data.metrics[m] - base.data.metrics[m]
            values[f"{prefix}/{m}"] = base.data.metrics[m]
    recorded = run.data.tags.get(f"{prefix}_run_id") == baseline_run_id
    if not (recorded and all(run.data.metrics.get(k) == v for k, v in values.items())):
        tracking.log_metrics(client, run_id, values)
        tags = {f"{prefix}_run_id": baseline_run_id}
        if prefix == "baseline":
            tags[tracking.NOTE_TAG] = pairing_note(run, base, values)
        tracking.set_tags(client, run_id, tags)
    return {k: v for k, v in values.items() if k.startswith(f"{delta}/")}


def flag_provenance(client: MlflowClient, run_id: str, baseline_run_id: str) -> list[str]:
    """Tag the transfer run with ``provenance_mismatch`` when it and its baseline ran different code or library
    versions (``benchmark.provenance.provenance_mismatch``; lines joined by ``"; "``); clear a stale tag otherwise."""
    tags = client.get_run(run_id).data.tags
    mismatch = provenance.provenance_mismatch(tags, client.get_run(baseline_run_id).data.tags)
    if mismatch:
        log.warning("run %s and its baseline %s ran different code: %s", run_id, baseline_run_id, "; ".join(mismatch))
        tracking.set_tags(client, run_id, {"provenance_mismatch": "; ".join(mismatch)})
    elif "provenance_mismatch" in tags:
        client.delete_tag(run_id, "provenance_mismatch")
    return mismatch


def pairing_note(run, base, values: dict[str, float], verdict: str | None = None) -> str:
    """The transfer run's description (Markdown on its MLflow page): its pairing, its deltas, its cell's verdict."""
    t = run.data.tags
    link = f"#/experiments/{base.info.experiment_id}/runs/{base.info.run_id}"
    lines = [
        f"**{t.get('strategy')}** from source **{t.get('source')}** to **{t.get('target')}**, "
        f"{t.get('label_budget')} labels/class, seed {t.get('seed')}.",
        "",
        f"Paired with the {_baseline_words(base)} [{base.info.run_name}]({link}) (`baseline_key` "
        f"`{t.get('baseline_key')}`): same split, label subset, seed, preprocessing and training budget.",
        "",
        "| metric | transfer | scratch | delta |",
        "|---|---|---|---|",
    ]
    for m in DELTA_METRICS:
        if f"delta/{m}" in values:
            lines.append(
                f"| {m} | {run.data.metrics.get(m, float('nan')):.4f} | {values[f'baseline/{m}']:.4f} | "
                f"{values[f'delta/{m}']:+.4f} |"
            )
    if verdict:
        lines += ["", f"Cell verdict (over seeds, see the sweep's parent run): **{verdict}**"]
    return "\n".join(lines)


def _baseline_words(base) -> str:
    strategy = base.data.tags.get("strategy", "scratch")
    return "from-scratch baseline" if strategy == "scratch" else f"baseline `{strategy}` (random initialisation)"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomically write a job record for the sweep's finaliser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: all cores); returns the number used."""
    import os

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
