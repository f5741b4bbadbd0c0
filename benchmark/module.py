"""The one LightningModule. It knows no strategy by name: the strategy's hooks decide what trains."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score

from benchmark.strategies.base import TransferStrategy


@dataclass(frozen=True)
class Optimization:
    """The optimisation half of the training budget, identical for a transfer run and its baseline."""

    lr: float = 3.0e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    warmup_fraction: float = 0.05
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choices: adamw, sgd")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"budget.lr must be a positive finite number, got {self.lr}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"budget.weight_decay must be a finite number >= 0, got {self.weight_decay}")


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, macro-F1 and expected calibration error (15 bins, L1), all from torchmetrics."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=num_classes, average="macro"),
            "ece": MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"),
        }
    )


class TransferModule(pl.LightningModule):
    """Classification with a timm model; optimisation and freezing are delegated to the strategy.

    The learning rate of each optimizer group is ``lr × group["lr_scale"] × schedule(step)``, set before every
    step, with a linear warm-up and a cosine decay to zero over ``total_steps``: a strategy can change a group's
    ``lr_scale`` mid-run (LP-FT) and the change really reaches the optimizer.
    Metrics are kept per epoch under ``train/`` and ``val/`` in ``epoch_metrics`` (the row ``EpochLogger`` sends to
    MLflow and ``ModelSelection`` reads), and under ``test/`` in ``test_scores``. They are summed in plain tensors
    (training metrics on every step, no torchmetrics update there) and made floats once per epoch, without
    Lightning's ``self.log``, whose result collections cost 1-2 ms a call on a 2-core CPU: the same means as
    Lightning's (the loss weighted by batch size in float32), then the torchmetrics collections.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: TransferStrategy,
        num_classes: int,
        optimization: Optimization,
        total_epochs: int,
        total_steps: int,
        fused_optimizer: bool,
    ):
        super().__init__()
        self.model = model
        self.strategy = strategy
        # strategy-owned trainable modules (a domain discriminator): registered here so that they move to the
        # device, are saved in checkpoints and are optimised
        self.extra = nn.ModuleDict(strategy.extra_modules(model, num_classes))
        self.optimization = optimization
        self.total_epochs = total_epochs
        self.total_steps = max(total_steps, 1)
        self.fused_optimizer = fused_optimizer  # AdamW's fused kernel (``TrainerSettings.fused_optimizer``)
        self.train_sums: dict[str, torch.Tensor] = {}  # this epoch's batch-size-weighted sums, see accumulate_train
        self.val_metrics = classification_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = classification_metrics(num_classes).clone(prefix="test/")
        self.eval_loss: torch.Tensor | None = None  # the evaluated batches' loss x batch size, summed (score_batch)
        self.eval_n = 0
        self.epoch_metrics: dict[str, float] = {}  # this epoch's train means, and its val scores when it validated
        self.test_scores: dict[str, float] = {}  # the last test pass's scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.optimization
        groups = []
        for group in self.strategy.param_groups(self.model):
            decay = [p for p in group["params"] if p.ndim > 1]
            no_decay = [p for p in group["params"] if p.ndim <= 1]  # biases and norm scales: no weight decay
            scale = float(group.get("lr_scale", 1.0))
            wd = float(group.get("weight_decay", opt.weight_decay))  # a strategy may turn decay off (L2-SP)
            groups += [
                {"params": decay, "weight_decay": wd, "lr_scale": scale},
                {"params": no_decay, "weight_decay": 0.0, "lr_scale": scale},
            ]
        extra = [p for p in self.extra.parameters() if p.requires_grad]
        groups += [
            {"params": [p for p in extra if p.ndim > 1], "weight_decay": opt.weight_decay, "lr_scale": 1.0},
            {"params": [p for p in extra if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": 1.0},
        ]
        groups = [g for g in groups if g["params"]]
        if opt.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=True)
        # fused=None, not False: PyTorch's own choice (the per-tensor loop on a CPU), as runs had before the setting
        return torch.optim.AdamW(groups, lr=opt.lr, fused=True if self.fused_optimizer else None)

    def lr_factor(self, step: int) -> float:
        warmup = max(1, int(self.optimization.warmup_fraction * self.total_steps))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_train_epoch_start(self) -> None:
        self.epoch_metrics = {}
        self.strategy.on_train_epoch_start(self.model, self.current_epoch, self.total_epochs, self._optimizer())

    def _optimizer(self) -> torch.optim.Optimizer | None:
        try:
            return self.optimizers(use_pl_optimizer=False)
        except (RuntimeError, AttributeError):
            return None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        factor = self.lr_factor(self.global_step)
        for group in self._optimizer().param_groups:
            group["lr"] = self.optimization.lr * group["lr_scale"] * factor

    @property
    def progress(self) -> float:
        """Training progress in [0, 1] (optimiser steps done / planned), for schedules such as DANN's."""
        return min(1.0, self.global_step / self.total_steps)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        out = self.strategy.training_loss(self, batch)
        loss, y = out.loss, out.labels
        extra = self.strategy.regularizer(self.model)
        if extra is not None:
            loss = loss + extra
        logs = {f"train/{k}": v for k, v in out.logs.items()}
        if extra is not None:
            logs["train/regularizer"] = extra
        self.accumulate_train(loss, out.logits, y, logs)
        return loss

    def accumulate_train(
        self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, extra: dict[str, torch.Tensor]
    ) -> None:
        """Add one batch to the epoch's sums: loss and ``extra`` weighted by the batch size, correct predictions."""
        n = len(y)
        values = {"train/loss": loss.detach(), **{k: v.detach() for k, v in extra.items()}}
        if not self.train_sums:
            self.train_sums = {"n": torch.zeros((), dtype=torch.int64), "train/acc": torch.zeros((), dtype=torch.int64)}
        sums = self.train_sums
        for k, v in values.items():  # float32 sums of value x batch size, as Lightning's on_epoch mean does
            sums[k] = sums.get(k, torch.zeros((), dtype=torch.float32)) + v.float() * n
        sums["train/acc"] = sums["train/acc"] + (logits.detach().argmax(-1) == y).sum()
        sums["n"] = sums["n"] + n

    def pop_train_metrics(self) -> dict[str, torch.Tensor]:
        """The epoch's means (``train/loss``, ``train/acc``, ``train/regularizer``) from the sums, which restart."""
        sums, self.train_sums = self.train_sums, {}
        n = sums.pop("n", None)
        return {k: v / n for k, v in sums.items()} if n is not None else {}

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.epoch_metrics.update({k: float(v) for k, v in self.pop_train_metrics().items()})

    def score_batch(self, logits: torch.Tensor, y: torch.Tensor, collection: MetricCollection) -> None:
        """Add one evaluated batch: its loss x batch size to the sum (float32, as Lightning's epoch mean of a logged
        loss) and its class probabilities to ``collection``. Validation, the test and ``benchmark.train``'s own
        evaluation loop all score through it."""
        n = len(y)
        loss = F.cross_entropy(logits, y).detach() * n
        self.eval_loss = (torch.zeros((), dtype=torch.float32, device=loss.device) if self.eval_loss is None
                          else self.eval_loss) + loss  # fmt: skip
        self.eval_n += n
        collection.update(logits.float().softmax(-1), y)

    def pop_scores(self, collection: MetricCollection) -> dict[str, float]:
        """The scored batches' mean loss and ``collection``'s metrics, under its prefix; both start again."""
        loss, n, self.eval_loss, self.eval_n = self.eval_loss, self.eval_n, None, 0
        scores = {f"{collection.prefix}loss": float(loss / n)} if loss is not None else {}
        scores.update({k: float(v) for k, v in collection.compute().items()})
        collection.reset()
        return scores

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.score_batch(self.model(x), y, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.epoch_metrics.update(self.pop_scores(self.val_metrics))

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.score_batch(self.model(x), y, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.test_scores = self.pop_scores(self.test_metrics)
