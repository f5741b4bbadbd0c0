"""The training recipe of one run: data, model, source weights, the strategy's own pretraining, then fit and test
(or, for an evaluation-only protocol, evaluate), returning the run's metrics.

What a pair shares is decided here: the label subset (target, budget, seed), the preprocessing (the source's), the
model-initialisation seed (run seed and the strategy's ``meta.seed_salt``, empty for every real strategy) and the
budget. The recipe knows no strategy and no weights kind by name: the strategy's hooks and the weights kind's
methods decide.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from benchmark import convergence, identity, lineage, phases
from benchmark import probe_solver as probe_solver_module
from benchmark.callbacks import RunWatch
from benchmark.data import Splits, label_subset, seed_hash, unlabelled, validation_subset
from benchmark.features import cached_split_features, extract
from benchmark.models import build_model
from benchmark.probe_solver import solved_probe
from benchmark.search_space import CRITERIA
from benchmark.spec import Context, JobSpec
from benchmark.splits import load_splits
from benchmark.strategies.base import Pretraining, TransferStrategy
from benchmark.strategies.evaluation import EvaluationProtocol
from benchmark.tracking import log_metrics
from benchmark.train import SELECTED_VAL, fit_and_test, test_scores
from benchmark.util import atomic_path, stable_hash

log = logging.getLogger(__name__)


def train(job: JobSpec, ctx: Context, run_id: str, checkpoint: Path | None = None,
          watch: RunWatch | None = None) -> dict[str, float]:  # fmt: skip
    """Train (or evaluate) the job in MLflow run ``run_id``; ``checkpoint`` is its resumable checkpoint, ``watch``
    an observer of the model at each stage (the contract tests)."""
    t_start = time.perf_counter()
    strategy = job.strategy
    splits = load_splits(job.target_id, job.target, job.target_config)
    subset = label_subset(splits.train.labels, job.label_budget, job.data_seed, job.target_id)
    prep = job.source.preprocessing
    val_indices = None
    if job.trial is not None and job.selection_criterion == CRITERIA["source"]:
        # domain adaptation's unsupervised criterion: the source's own validation split (disjoint from the source's
        # training split, the same for every trial of the study); no label of the target is read
        val = prep.apply(adaptation_source(job, splits).val)
        ctx.client.log_dict(run_id, {"val": "source validation split", "examples": len(val)}, "data/val_indices.json")
    else:
        if job.validation != "full":  # selection and the objective see no more labels per class than training
            val_indices = validation_subset(splits.val.labels, job.validation, job.label_budget, job.data_seed,
                                            job.target_id)  # fmt: skip
            ctx.client.log_dict(run_id, {"val_indices": val_indices.tolist()}, "data/val_indices.json")
        val = prep.apply(splits.val if val_indices is None else splits.val.subset(val_indices))
    test = None if job.trial is not None else prep.apply(splits.test)  # a trial never runs the test split
    lineage.log_datasets(ctx.client, run_id, job_datasets(job, splits))
    source_train = None
    if adapts(strategy):
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

    pl.seed_everything(seed_hash("model_init", job.seed, job.meta.seed_salt) % 2**32, workers=True, verbose=False)
    model = build_model(job.source.arch, splits.num_classes, prep, **job.source.model_kwargs)
    loaded, weights_file = 0, None
    if job.meta.uses_source_weights:
        weights_file = source_weights_file(job, ctx)
        loaded = job.source.weights.load(model, weights_file)
    if watch is not None:
        watch.on_stage("initial", model, {})
    extra: dict[str, float] = {}
    pdata = pretraining_data(job, ctx, splits)
    pre = strategy.pretrain(model, pdata) if pdata is not None else {}
    if watch is not None:
        watch.on_stage("pretrained", model, dict(pre))
    if pre:
        extra.update(pre)
        log_metrics(ctx.client, run_id, pre)
    if isinstance(strategy, EvaluationProtocol):
        t0 = time.perf_counter()
        metrics = strategy.evaluate(model, splits, subset, prep, job.seed)
        metrics = {**metrics, "time/evaluate_s": time.perf_counter() - t0}
        train_examples = len(subset)
    else:
        weights_id = pdata.key if pdata is not None else None
        metrics, train_examples = _fit(job, ctx, run_id, model, splits, subset, val, test, weights_file, weights_id,
                                       checkpoint, source_train, extra, t_start, watch, val_indices)  # fmt: skip
    if watch is not None:
        watch.on_stage("end", model, dict(metrics))
    metrics.update(
        {
            "data/train_examples": float(train_examples),
            "data/val_examples": float(len(val)),
            **({"data/test_examples": float(len(test))} if test is not None else {}),
            "weights/loaded_tensors": float(loaded),
            "time/total_s": time.perf_counter() - t_start,
            "model/params": float(sum(p.numel() for p in model.parameters())),
            **extra,
        }
    )
    metrics.setdefault("time/setup_s", metrics["time/total_s"])
    if ctx.lineage.logs_model(job.meta.role) and not isinstance(strategy, EvaluationProtocol) and test is not None:
        log_trained_model(job, ctx, run_id, model, test)
    return metrics


def job_datasets(job: JobSpec, splits: Splits) -> list:
    """The MLflow dataset inputs of a run: the target, and the source's labelled dataset when the run trains on it
    (domain adaptation, self-supervised pretraining on the source's images)."""
    inputs = [lineage.dataset_input(job.target_id, job.target_config, splits, "target")]
    strategy = job.strategy
    on_source = pretrains(strategy) and (strategy.pretrain_identity() or {}).get("data") == "source"
    if adapts(strategy) or on_source:
        labelled = job.source.weights.labelled_data
        source = load_splits(labelled.dataset_id, labelled.dataset, labelled.config)
        inputs.append(lineage.dataset_input(labelled.dataset_id, labelled.config, source, "source"))
    return inputs


def log_trained_model(job: JobSpec, ctx: Context, run_id: str, model: torch.nn.Module, test) -> str:
    """Log the run's model as it was tested (the selected weights), with preprocessed test images as its input
    example; registered under the cell's name (the run name without its seed) when ``tracking.register_models``."""
    example = torch.stack([test[i][0] for i in range(min(4, len(test)))])
    tags = {k: v for k, v in job.tags(ctx).items() if k in ("role", "source", "target", "strategy", "seed",
                                                            "label_budget", "arch", "run_key", "variant")}  # fmt: skip
    name = job.name.removesuffix(f"__s{job.seed}") if ctx.lineage.register_models else None
    return lineage.log_model(ctx.client, run_id, model, example, tags, name)


def _fit(job, ctx, run_id, model, splits, subset, val, test, weights_file, weights_id, checkpoint, source_train,
         extra, t_start, watch=None, val_indices=None):  # fmt: skip
    prep = job.source.preprocessing
    fit_model, fit_strategy = model, job.strategy
    solver = solved_probe(job.strategy)  # with augmentation only where it fine-tunes after (compose checks)
    if job.augment.active and job.strategy.frozen_backbone and job.trainer.feature_cache:
        # cached features are one view per image: augmented views need the frozen backbone run on every batch
        log.info("augment=%s: frozen features are not cached (each batch is a new view)", job.augment.policy)
    feats = None
    if solver is not None or (job.strategy.frozen_backbone and has_learned_backbone(job) and job.trainer.feature_cache
                              and not job.augment.active):  # fmt: skip
        feats = frozen_features(job, ctx, model, splits, val_indices, weights_file, weights_id, test is not None)
        extra.update({"time/feature_extract_s": feats.seconds, "features/cached": float(feats.cached)})
    if solver is not None:
        probe = solve_head(job, ctx, run_id, model, feats, subset)
        extra.update(probe)
        if job.strategy.frozen_backbone:  # the probe is the whole training: score it and stop
            setup_s = time.perf_counter() - t_start
            # a solver that did not converge leaves the probe short of what the table claims: budget-limited
            solved = {"time/fit_s": probe["time/probe_solve_s"], "train/total_steps": 0.0, "budget/steps": 0.0,
                      "budget/capped": 1.0 - probe["probe/converged"]}  # fmt: skip
            metrics = probe_scores(job, model, feats, test is not None)
            return {**metrics, **solved, "time/setup_s": setup_s}, len(subset)
    if feats is not None and job.strategy.frozen_backbone:
        # the backbone is frozen and in eval mode: train the head on its features, computed once per example
        train, val, test = feats.datasets(subset, test is not None)
        fit_model, fit_strategy = model.get_classifier(), TransferStrategy()
    elif source_train is not None:
        train = prep.apply(unlabelled(splits.train))
    else:
        train = prep.apply(splits.train.subset(subset))
    if feats is None or not job.strategy.frozen_backbone:  # the training split only: never val/test or features
        train = job.augment.wrap(train, prep, job.seed, job.meta.seed_salt)
    setup_s = time.perf_counter() - t_start
    fit = partial(fit_and_test, fit_model, fit_strategy, train, val, num_classes=splits.num_classes,
                  trainer=job.trainer, seed=job.seed, selection=job.selection, client=ctx.client, run_id=run_id,
                  order_salt=job.meta.seed_salt, source_train=source_train,
                  callbacks=[watch] if watch is not None else None)  # fmt: skip
    if not job.budget.converges:
        result = fit(test=test, budget=job.budget, checkpoint=checkpoint)
        steps = {"budget/steps": float(result.total_steps), "budget/capped": 0.0}
        return {**result.metrics, **steps, "time/setup_s": setup_s}, len(train)
    return {**converged_fit(job, ctx, run_id, fit, fit_model, len(train), splits.num_classes, test, checkpoint),
            "time/setup_s": setup_s}, len(train)  # fmt: skip


def converged_fit(job, ctx, run_id, fit, model, n_train, num_classes, test, checkpoint) -> dict[str, float]:
    """``budget.mode=converged``: complete schedules of doubling length from the same initial weights until the
    rule of ``benchmark.convergence`` stops; the attempt with the best validation accuracy is tested. Each attempt's
    epochs are logged after the previous one's; its resumable checkpoint is its own file (``<name>.steps<N>``)."""
    initial = copy.deepcopy(model.state_dict())
    kept: dict[str, object] = {"best": -math.inf}
    epochs_before, fit_s = 0, 0.0

    def attempt(steps: int) -> tuple[int, float]:
        nonlocal epochs_before, fit_s
        model.load_state_dict(initial)
        ckpt = None if checkpoint is None else Path(checkpoint).with_suffix(f".steps{steps}.ckpt")
        result = fit(test=None, budget=job.budget.with_steps(steps), checkpoint=ckpt, epoch_offset=epochs_before)
        epochs_before += result.epochs
        fit_s += result.metrics.get("time/fit_s", 0.0)
        val = result.metrics.get(SELECTED_VAL, math.nan)
        log_metrics(ctx.client, run_id, {"budget/val": val}, step=result.total_steps)
        if val > kept["best"]:  # the shorter attempt keeps a tie (convergence.converge reports it)
            kept.update(best=val, state=copy.deepcopy(model.state_dict()), metrics=result.metrics)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
        return result.total_steps, val

    b = job.budget
    outcome = convergence.converge(b.plan(n_train)[1], b.cap_steps, b.patience, b.min_delta, attempt)
    if "state" in kept:
        model.load_state_dict(kept["state"])
    rule = {"cap_steps": b.cap_steps, "patience": b.patience, "min_delta": b.min_delta}
    ctx.client.log_dict(run_id, {"rule": rule, "attempts": outcome.trace(), "capped": outcome.capped},
                        "budget/trace.json")  # fmt: skip
    metrics = {**kept.get("metrics", {}), **outcome.metrics(), "time/fit_s": fit_s}
    if test is not None:
        metrics.update(test_scores(model, num_classes, test, job.trainer, job.seed))
    return metrics


def frozen_features(job, ctx, model, splits, val_indices, weights_file, weights_id, with_test: bool) -> Frozen:
    """The model's frozen features of every split (its backbone in eval mode): from the content-addressed cache when
    the backbone carries learned weights and ``trainer.feature_cache`` is on, else computed now in memory (a random
    initialisation is the run's own: ``linear_probe_random``)."""
    prep = job.source.preprocessing
    full_val = prep.apply(splits.val)  # the cache's key names the whole split: the budget's subset is taken after
    # the cache's key names every split: a trial's cache holds test features too, but it reads no test label
    images = prep.apply(splits.test)
    if has_learned_backbone(job) and job.trainer.feature_cache:
        key = features_key(job, weights_file, weights_id)
        feats = cached_split_features(key, ctx.cache_dir, model, prep.apply(splits.train), full_val, images)
        seconds, cached_key = feats.seconds, key
        train_x, val_x, test_x = feats.train, feats.val, feats.test
    else:
        t0 = time.perf_counter()
        train_x, _ = extract(model, prep.apply(splits.train))
        val_x, _ = extract(model, full_val)
        test_x = extract(model, images)[0] if with_test else None
        seconds, cached_key = time.perf_counter() - t0, None
    vsel = slice(None) if val_indices is None else torch.from_numpy(val_indices)
    labels = {k: torch.from_numpy(getattr(splits, k).labels) for k in ("train", "val", "test")}
    val_id = "full" if val_indices is None else stable_hash(val_indices.tolist())
    return Frozen(train_x, labels["train"], val_x[vsel], labels["val"][vsel], test_x, labels["test"], seconds,
                  cached_key, val_id)  # fmt: skip


def solve_head(job, ctx, run_id, model, feats: Frozen, subset) -> dict[str, float]:
    """Solve the probe on the subset's features (``benchmark.probe_solver``), on the job's device, and put the
    solution into the model's classifier; log the regularisation path (``probe/trace.json``, ``probe/path_val_acc``
    per strength). Returns the probe's metrics."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"a solved probe needs a linear classifier; {job.source.arch} has {type(head).__name__}")
    idx = torch.from_numpy(subset)
    device = "cuda" if job.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    # a solve is deterministic: on cached features, one per (features, examples, solver), e.g. every seed's with
    # every label, or a rerun
    memo = None
    if feats.key is not None:
        what = {"features": feats.key, "train": stable_hash(subset.tolist()), "val": feats.val_id,
                "solver": asdict(job.strategy.probe)}  # fmt: skip
        memo = Path(ctx.cache_dir) / "probes" / f"{stable_hash(what)}.pt"
    with phases.phase("fit"):
        if memo is not None and memo.is_file():
            result = probe_solver_module.load(memo)
        else:
            result = probe_solver_module.solve(feats.train[idx], feats.train_y[idx], feats.val, feats.val_y,
                                               head.out_features, job.strategy.probe, device)  # fmt: skip
            if memo is not None:
                with atomic_path(memo) as tmp:
                    probe_solver_module.save(result, tmp)
    solve_s = time.perf_counter() - t0
    with torch.no_grad():
        head.weight.copy_(result.chosen.weight.to(head.weight))
        head.bias.copy_(result.chosen.bias.to(head.bias))
    trace = result.trace()
    ctx.client.log_dict(run_id, {"strengths": trace, "chosen_C": result.chosen.C}, "probe/trace.json")
    for i, row in enumerate(trace):  # the path, strength i at step i (``probe/val_acc`` is the chosen one's)
        log_metrics(ctx.client, run_id, {"probe/path_val_acc": row["val_acc"]}, step=i)
    return {**result.metrics(), "probe/val_acc": result.chosen.val_acc, "time/probe_solve_s": solve_s}


def probe_scores(job, model, feats: Frozen, with_test: bool) -> dict[str, float]:
    """A solved probe's run metrics: its validation and test scores (the classifier on the frozen features), no
    optimiser step, and ``budget/capped`` when the solver did not converge."""
    head = model.get_classifier()
    val = test_scores(head, head.out_features, TensorDataset(feats.val, feats.val_y), job.trainer, job.seed)
    metrics = {f"val/{k.removeprefix('test/')}": v for k, v in val.items() if k.startswith("test/")}
    metrics[SELECTED_VAL] = metrics["val/acc"]
    if with_test:
        metrics.update(test_scores(head, head.out_features, TensorDataset(feats.test, feats.test_y), job.trainer,
                                   job.seed))  # fmt: skip
    return metrics


@dataclass
class Frozen:
    """Frozen features of a target's splits with their labels (validation already cut to the examples the run may
    see); ``test`` is None for a run that never scores the test split and had nothing cached."""

    train: torch.Tensor
    train_y: torch.Tensor
    val: torch.Tensor
    val_y: torch.Tensor
    test: torch.Tensor | None
    test_y: torch.Tensor
    seconds: float
    key: str | None = None  # the content key of cached features (None: computed in memory for this run)
    val_id: str = "full"  # which validation examples: the whole split, or a hash of the run's indices

    @property
    def cached(self) -> bool:
        return self.key is not None

    def datasets(self, subset, with_test: bool) -> tuple[TensorDataset, TensorDataset, TensorDataset | None]:
        """The training subset's, the validation examples' and (``with_test``) the test split's features."""
        idx = torch.from_numpy(subset)
        test = TensorDataset(self.test, self.test_y) if with_test else None
        return TensorDataset(self.train[idx], self.train_y[idx]), TensorDataset(self.val, self.val_y), test


def adapts(strategy: TransferStrategy | EvaluationProtocol) -> bool:
    """Whether the strategy trains on the source's labelled data and the target's unlabelled images."""
    return isinstance(strategy, TransferStrategy) and strategy.data == "adaptation"


def pretrains(strategy: TransferStrategy | EvaluationProtocol) -> bool:
    """Whether the strategy trains its backbone itself before the labelled stage (self-supervised)."""
    return isinstance(strategy, TransferStrategy) and strategy.pretrain_identity() is not None


def has_learned_backbone(job: JobSpec) -> bool:
    """Whether the frozen backbone carries learned weights worth caching features of (source or self-supervised)."""
    return job.meta.uses_source_weights or pretrains(job.strategy)


def features_key(job: JobSpec, weights_file: Path | None, weights_id: str | None = None) -> str:
    """Content address of the job's frozen features: ``weights_id`` names weights the strategy trained itself
    (self-supervised pretraining), else the source's weights kind names its weights."""
    weights = weights_id if weights_id is not None else job.source.weights.content_id(weights_file)
    return identity.feature_key(job.source, weights, job.target_id, job.target_config)


def pretraining_data(job: JobSpec, ctx: Context, splits: Splits) -> Pretraining | None:
    """The unlabelled images and cache key a strategy's ``pretrain`` hook gets (built only if it asks)."""
    ident = job.strategy.pretrain_identity() if isinstance(job.strategy, TransferStrategy) else None
    if ident is None:
        return None
    if ident.get("data") == "source":
        images = adaptation_source(job, splits, check_classes=False).train
        data = {"source": job.source.id, "config": job.source.weights.labelled_data.config}
    else:
        images, data = splits.train, {"id": job.target_id, "config": job.target_config}
    key = identity.pretraining_key(job.source, data, ident, job.seed)
    return Pretraining(job.source.preprocessing.apply(unlabelled(images)), job.seed, ctx.cache_dir, key,
                       job.trainer.accelerator)  # fmt: skip


def adaptation_source(job: JobSpec, target_splits: Splits | None = None, check_classes: bool = True) -> Splits:
    """The labelled source data of a domain-adaptation job: the dataset the source was pretrained on, with the
    target's classes in the same order."""
    labelled = job.source.weights.labelled_data
    if labelled is None:
        raise ValueError(
            f"strategy {job.strategy_id!r} needs the source's labelled data, but source {job.source.id!r} has "
            f"{job.source.weights.kind} weights (no dataset); use a source with pretrain weights, whose "
            "weights.dataset is its labelled data (e.g. source=synth_digits)"
        )
    splits = load_splits(labelled.dataset_id, labelled.dataset, labelled.config)
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
    strategy = job.strategy
    trains = isinstance(strategy, TransferStrategy)
    pretrains_on_source = trains and (strategy.pretrain_identity() or {}).get("data") == "source"
    if not (adapts(strategy) or pretrains_on_source):
        return []
    try:
        splits = load_splits(job.target_id, job.target, job.target_config) if not job.target.problems() else None
        adaptation_source(job, splits, check_classes=adapts(strategy))
    except Exception as exc:
        return [f"{type(exc).__name__}: {exc}"]
    return []


def source_weights_file(job: JobSpec, ctx: Context) -> Path | None:
    """The local file of the source's weights (the weights kind's ``local_file``: the harness-pretrained checkpoint
    is trained now if missing)."""
    return job.source.weights.local_file(job.source, ctx, job.trainer)
