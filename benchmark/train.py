"""One training run: loaders, Trainer, fit, model selection and the held-out test, with timings."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch.utils.data import Dataset, Sampler, TensorDataset

from benchmark import phases
from benchmark.callbacks import DivergenceGuard, EpochCheckpoint, EpochLogger, ModelSelection
from benchmark.data import EpochShuffle, seed_hash
from benchmark.loaders import make_loader
from benchmark.module import Optimization, TransferModule
from benchmark.strategies.base import TransferStrategy

log = logging.getLogger(__name__)

# Lightning's start-up banners ("GPU available", tips) repeat for every run of a sweep; keep warnings only.
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@dataclass(frozen=True)
class Budget:
    """The training budget of a transfer run and of its from-scratch baseline (docs/concepts/verdicts.md).

    ``mode`` says what "the same budget" means:

    * ``fixed``: both sides train the same number of optimiser steps: ``steps`` when set (> 0), else ``epochs``
      passes over the labelled subset, raised when needed so that at least ``min_steps`` steps run (with 1 label
      per class an epoch is a single step, and a budget in epochs alone would leave the baseline untrained);
    * ``converged``: each side trains until its validation accuracy stops improving, by the doubling rule of
      ``benchmark.convergence``: the fixed plan's steps first, then complete schedules of twice as many steps, from
      the same initial weights, until ``patience`` doublings in a row improve the best validation accuracy by no
      more than ``min_delta``, or the next schedule would pass ``cap_steps`` (the run is then ``capped``, and its
      cell budget-limited).
    """

    epochs: int = 8
    min_steps: int = 100
    batch_size: int = 64
    optimization: Optimization = field(default_factory=Optimization)
    mode: str = "fixed"
    steps: int = 0  # > 0: exactly this many optimiser steps (the training length a tuning study can search)
    cap_steps: int = 1600  # converged: the longest schedule the rule may try
    patience: int = 1  # converged: doublings in a row without improvement before the rule stops
    min_delta: float = 0.005  # converged: the smallest validation-accuracy gain that counts as an improvement

    def __post_init__(self) -> None:
        if self.mode not in BUDGET_MODES:
            raise ValueError(f"budget.mode={self.mode!r}; choose one of: {', '.join(BUDGET_MODES)}")
        for name in ("steps", "cap_steps", "patience", "min_delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"budget.{name}={getattr(self, name)} must be >= 0")
        if self.mode == "converged" and self.patience < 1:
            raise ValueError(f"budget.patience={self.patience}: the converged rule needs patience >= 1")

    @property
    def converges(self) -> bool:
        return self.mode == "converged"

    def plan(self, n_train: int) -> tuple[int, int]:
        """``(epochs, total_steps)`` for a training set of ``n_train`` examples."""
        if n_train < 1:
            raise ValueError("the training subset is empty")
        steps_per_epoch = math.ceil(n_train / self.batch_size)
        if self.steps > 0:
            epochs = math.ceil(self.steps / steps_per_epoch)
        else:
            epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        return epochs, epochs * steps_per_epoch

    def with_steps(self, steps: int) -> Budget:
        """This budget training ``steps`` optimiser steps (rounded up to whole epochs), in fixed mode."""
        return replace(self, mode="fixed", steps=steps)


BUDGET_MODES = ("fixed", "converged")
"""``budget.mode`` choices (``Budget``); both are part of the run key (``benchmark.identity.budget``)."""


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how numerics run. ``precision`` and the other ``identity.NUMERICS`` are part of the run key; device
    and threads are not.

    ``devices`` is Lightning's: a count (1: the first device) or a list of device indices (``[1]``: the second
    visible GPU, which ``benchmark.devices`` gives a parallel job so that parallel jobs do not share one GPU)."""

    accelerator: str = "cpu"
    devices: int | list[int] = 1
    precision: str = "32-true"
    deterministic: bool | str = False
    num_workers: int = 0
    benchmark: bool = False
    feature_cache: bool = True  # frozen-backbone strategies train their head on features computed once
    checkpoint_every_s: float = 60.0  # resumable checkpoint at most this often (seconds of training)
    channels_last: bool = False  # NHWC layout for convolutions (GPU tensor cores)
    compile: bool = False  # torch.compile the model
    # AdamW's fused kernel: one pass per tensor instead of a dozen per-tensor ops (about 3x faster steps on a CPU,
    # the same update in other rounding); part of the run key; false: the per-tensor loop of runs recorded before it
    fused_optimizer: bool = True
    progress_bar: bool | str = "auto"  # Lightning's bar: auto = on a terminal, never in CI or a log file

    def __post_init__(self) -> None:
        if self.progress_bar not in PROGRESS_BAR:
            raise ValueError(f"trainer.progress_bar={self.progress_bar!r}; choose one of: auto, true, false")

    @property
    def shows_progress_bar(self) -> bool:
        """Whether Lightning draws its progress bar: ``auto`` when stderr is a terminal and ``$CI`` is unset (a bar
        redrawn into a log file or a CI console is noise)."""
        if self.progress_bar == "auto":
            return sys.stderr.isatty() and not os.environ.get("CI")
        return bool(self.progress_bar)


PROGRESS_BAR = ("auto", True, False)
"""``trainer.progress_bar`` choices (YAML ``true``/``false`` are booleans). Not part of any run key."""


@dataclass
class FitResult:
    metrics: dict[str, float]
    history: list[dict[str, float]]
    selected_epoch: int
    epochs: int
    total_steps: int


class EpochDraw(Sampler[int]):
    """``length`` indices into a dataset of ``n`` examples per epoch: consecutive permutations drawn from (seed,
    salt, epoch, k), cut at ``length``. Pairs every target batch of an adaptation epoch with a source batch, whatever
    the sizes of the two sets; like ``EpochShuffle`` it depends only on the epoch, so a resumed run repeats it."""

    def __init__(self, n: int, length: int, seed: int, salt: str = ""):
        if n < 1:
            raise ValueError("the source set is empty")
        self.n, self.length, self.seed, self.salt, self.epoch = n, length, seed, salt, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        out: list[int] = []
        for k in range(math.ceil(self.length / self.n)):
            g = torch.Generator().manual_seed(seed_hash("source_order", self.seed, self.salt, self.epoch, k))
            out += torch.randperm(self.n, generator=g).tolist()
        return iter(out[: self.length])


def fit_and_test(
    model: nn.Module,
    strategy: TransferStrategy,
    train: Dataset,
    val: Dataset,
    test: Dataset | None,
    num_classes: int,
    budget: Budget,
    trainer: TrainerSettings,
    seed: int,
    selection: str = "last",
    client: MlflowClient | None = None,
    run_id: str | None = None,
    callbacks: list[pl.Callback] | None = None,
    order_salt: str = "",
    checkpoint: Path | None = None,
    source_train: Dataset | None = None,
    epoch_offset: int = 0,
) -> FitResult:
    """Train ``model`` with ``strategy`` under ``budget``; evaluate on ``test`` with the selected weights.

    The data order depends only on ``seed`` (not on the strategy), so a pair's runs see the same batches.
    With ``checkpoint``, a resumable checkpoint is written there during training; if the file already exists the
    fit resumes from it (model, optimizer, epoch, selection state and elapsed time).
    With ``source_train`` (domain adaptation), ``train`` holds the target's unlabelled images and every batch is
    ``{"source": (x, y), "target": (x, -1)}``: one pass over ``train`` per epoch, a source batch of the same size
    drawn alongside (``EpochDraw``). ``epoch_offset``: the MLflow step of epoch 0 (the epochs of earlier schedules of
    a converged budget come first).
    """
    epochs, total_steps = budget.plan(len(train))
    # everything random from here on (a strategy's extra modules, dropout) depends only on the seed, never on what
    # ran before in this process (a source pretrained now rather than read from the cache)
    torch.manual_seed(seed_hash("fit", seed, order_salt) % 2**63)
    strategy.setup(model)
    if trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    module = TransferModule(model, strategy, num_classes, budget.optimization, epochs, total_steps,
                            trainer.fused_optimizer)  # fmt: skip
    if trainer.compile:
        module.model = torch.compile(model)
    logged_through = -1
    if checkpoint is not None and Path(checkpoint).is_file() and client is not None and run_id is not None:
        logged_through = max((m.step for m in client.get_metric_history(run_id, "train/loss")), default=-1)
    logger_cb = EpochLogger(client, run_id, logged_through, epoch_offset=epoch_offset)
    select_cb = ModelSelection(selection)
    # tiny label budgets mean many short epochs: validate about 12 times per run, always on the last epoch
    val_every = max(d for d in range(1, max(1, epochs // 12) + 1) if epochs % d == 0)
    resuming = checkpoint is not None and Path(checkpoint).is_file()
    if not resuming and not callbacks and source_train is None and in_memory_features(train, val, test, trainer):
        with phases.phase("fit"):  # its test is a phase of its own inside
            metrics = fit_in_memory(module, train, val, test, epochs, budget.batch_size, seed, order_salt, val_every,
                                    logger_cb, select_cb)  # fmt: skip
        metrics["selected_epoch"] = float(select_cb.selected_epoch)
        metrics.update(selected_val(select_cb, logger_cb.history))
        metrics["time/epoch_logging_s"] = logger_cb.logging_s
        return FitResult(metrics, logger_cb.history, select_cb.selected_epoch, epochs, total_steps)
    pl_trainer = pl.Trainer(
        max_epochs=epochs,
        check_val_every_n_epoch=val_every,
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        precision=trainer.precision,
        deterministic=trainer.deterministic,
        benchmark=trainer.benchmark,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=trainer.shows_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[
            DivergenceGuard(),
            logger_cb,
            select_cb,
            *([EpochCheckpoint(checkpoint, trainer.checkpoint_every_s)] if checkpoint else []),
            *(callbacks or []),
        ],
    )
    train_loader = make_loader(train, budget.batch_size, True, seed, trainer.num_workers, order_salt)
    if source_train is not None:
        from pytorch_lightning.utilities import CombinedLoader

        draw = EpochDraw(len(source_train), len(train), seed, order_salt)
        source_loader = make_loader(source_train, budget.batch_size, True, seed, trainer.num_workers, sampler=draw)
        train_loader = CombinedLoader({"source": source_loader, "target": train_loader}, mode="min_size")
    val_loader = make_loader(val, 512, False, seed, trainer.num_workers)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        resume = str(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else None
        with phases.phase("fit"):
            t0 = time.perf_counter()
            pl_trainer.fit(module, train_loader, val_loader, ckpt_path=resume)
            fit_s = time.perf_counter() - t0
        metrics = {"time/fit_s": fit_s, "train/epochs": float(epochs), "train/total_steps": float(total_steps)}
        if test is not None:
            t0 = time.perf_counter()
            with phases.phase("test"):
                if plain_numerics(trainer) and isinstance(test, TensorDataset):  # Lightning's test loop, without it
                    scores = _evaluate(module, test, module.test_metrics)
                else:
                    pl_trainer.test(module, make_loader(test, 512, False, seed, trainer.num_workers), verbose=False)
                    scores = module.test_scores
            metrics["time/test_s"] = time.perf_counter() - t0
            metrics.update(scores)
    metrics["selected_epoch"] = float(select_cb.selected_epoch)
    metrics.update(selected_val(select_cb, logger_cb.history))
    metrics["time/epoch_logging_s"] = logger_cb.logging_s
    return FitResult(metrics, logger_cb.history, select_cb.selected_epoch, epochs, total_steps)


def test_scores(model: nn.Module, num_classes: int, test: Dataset, trainer: TrainerSettings, seed: int) -> dict:
    """The ``test/*`` scores of ``model`` as it is (its weights already selected), scored as ``fit_and_test`` scores
    its test split: a plain loop on in-memory tensors with plain numerics, else Lightning's test loop."""
    module = TransferModule(model, TransferStrategy(), num_classes, Optimization(), 1, 1, False)
    t0 = time.perf_counter()
    with phases.phase("test"):
        if plain_numerics(trainer) and isinstance(test, TensorDataset):
            scores = _evaluate(module, test, module.test_metrics)
        else:
            pl_trainer = pl.Trainer(accelerator=trainer.accelerator, devices=trainer.devices,
                                    precision=trainer.precision, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
            pl_trainer.test(module, make_loader(test, 512, False, seed, trainer.num_workers), verbose=False)
            scores = module.test_scores
    return {**scores, "time/test_s": time.perf_counter() - t0}


SELECTED_VAL = "val/selected_acc"
"""The validation accuracy of the weights that were selected (and then tested): a sweep's objective
(``benchmark.run.run_job`` returns it), computed from validation data only, never from the test split."""


def selected_val(select_cb: ModelSelection, history: list[dict[str, float]]) -> dict[str, float]:
    """``{SELECTED_VAL: value}``: the best validated ``val/acc`` under ``best_val``, the last epoch's under ``last``
    (the last epoch is always validated); empty when nothing was validated."""
    if select_cb.rule == "best_val":
        return {SELECTED_VAL: select_cb.best} if select_cb.best > -math.inf else {}
    last = [row["val/acc"] for row in history if "val/acc" in row]
    return {SELECTED_VAL: float(last[-1])} if last else {}


def in_memory_features(train: Dataset, val: Dataset, test: Dataset | None, trainer: TrainerSettings) -> bool:
    """True when every split is an in-memory tensor of feature vectors (cached frozen features) and the numerics are
    plain fp32 on the CPU: such a fit runs in ``fit_in_memory``, without Lightning. (``trainer.deterministic`` needs
    nothing there: linear layers, cross-entropy and AdamW on the CPU are deterministic.)"""
    splits = [train, val] + ([test] if test is not None else [])
    return all(
        isinstance(d, TensorDataset) and d.tensors[0].ndim == 2 and len(d) > 0 for d in splits
    ) and plain_numerics(trainer)


def plain_numerics(trainer: TrainerSettings) -> bool:
    """fp32 on the CPU, not compiled: what Lightning's loops compute there, a plain loop computes alike."""
    return trainer.accelerator == "cpu" and trainer.precision in ("32-true", "32") and not trainer.compile


def fit_in_memory(
    module: TransferModule,
    train: TensorDataset,
    val: TensorDataset,
    test: TensorDataset | None,
    epochs: int,
    batch_size: int,
    seed: int,
    order_salt: str,
    val_every: int,
    logger_cb: EpochLogger,
    select_cb: ModelSelection,
) -> dict[str, float]:
    """The Lightning fit of ``fit_and_test`` as a plain loop, for a head on cached features in memory.

    Lightning costs about 1 ms a step (hooks, closures, result collections), as much as 20 steps of a linear head:
    its 21 batches of an epoch on cached features took 60 ms through Lightning. The loop below makes the same calls
    in the same order: the module's optimizer groups, learning-rate schedule, ``training_step`` and train sums,
    the strategy's epoch hook, the same batches (``EpochShuffle``), validation epochs, metrics (weighted loss means
    and the module's torchmetrics collections), selection and per-epoch MLflow rows. No checkpoint is written (the
    whole fit takes well under ``checkpoint_every_s``); ``tests/test_features.py`` checks it against Lightning.
    """
    model, strategy = module.model, module.strategy
    optimizer = module.configure_optimizers()
    x_train, y_train = train.tensors
    sampler = EpochShuffle(len(train), seed, order_salt)
    step = 0
    t0 = time.perf_counter()
    logger_cb.start()
    model.train()
    for epoch in range(epochs):
        strategy.on_train_epoch_start(model, epoch, module.total_epochs, optimizer)
        sampler.set_epoch(epoch)
        order = torch.as_tensor(list(iter(sampler)))
        for batch_idx, i in enumerate(range(0, len(order), batch_size)):
            idx = order[i : i + batch_size]
            factor = module.lr_factor(step)
            for group in optimizer.param_groups:
                group["lr"] = module.optimization.lr * group["lr_scale"] * factor
            loss = module.training_step((x_train[idx], y_train[idx]), batch_idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            DivergenceGuard.check(loss.detach(), epoch, batch_idx)
        row = {k: float(v) for k, v in module.pop_train_metrics().items()}
        validated = (epoch + 1) % val_every == 0
        if validated:
            row.update(_evaluate(module, val, module.val_metrics))
            model.train()
        logger_cb.record(epoch, row, step, optimizer)
        select_cb.observe(epoch, validated, row.get(select_cb.monitor), module)
    logger_cb.flush()
    select_cb.restore(module)
    metrics = {"time/fit_s": time.perf_counter() - t0, "train/epochs": float(epochs), "train/total_steps": float(step)}
    if test is not None:
        t0 = time.perf_counter()
        with phases.phase("test"):
            scores = _evaluate(module, test, module.test_metrics)
        metrics["time/test_s"] = time.perf_counter() - t0
        metrics.update(scores)
    return metrics


@torch.inference_mode()
def _evaluate(module: TransferModule, data: TensorDataset, collection) -> dict[str, float]:
    """Lightning's evaluation of ``data`` in batches of 512, scored as its loop scores them (``score_batch``)."""
    module.model.eval()
    x, y = data.tensors
    for i in range(0, len(y), 512):
        module.score_batch(module.model(x[i : i + 512]), y[i : i + 512], collection)
    return module.pop_scores(collection)
