"""Lightning callbacks: per-epoch MLflow logging in one batch, model selection, divergence guard."""

from __future__ import annotations

import copy
import math
import time

import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient

from benchmark.tracking import log_metrics


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochLogger(pl.Callback):
    """Send each epoch's train/val metrics, learning rate and elapsed wall time to MLflow as one ``log_batch``.

    ``step`` is the epoch number; ``time/elapsed_s`` (since the fit started) and ``train/steps`` let reports draw
    curves against wall time and optimisation steps.
    """

    def __init__(self, client: MlflowClient | None, run_id: str | None):
        self.client, self.run_id = client, run_id
        self.history: list[dict[str, float]] = []
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        validated = getattr(pl_module, "last_val_epoch", trainer.current_epoch) == trainer.current_epoch
        stages = ("train/", "val/") if validated else ("train/",)
        row = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(stages) and torch.as_tensor(v).numel() == 1
        }
        row["time/elapsed_s"] = time.perf_counter() - self._start
        row["train/steps"] = float(trainer.global_step)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is not None:
            row["train/lr"] = max(g["lr"] for g in optimizer.param_groups)
        row["epoch"] = float(trainer.current_epoch)
        self.history.append(row)
        if self.client is not None and self.run_id is not None:
            log_metrics(
                self.client, self.run_id, {k: v for k, v in row.items() if k != "epoch"}, step=trainer.current_epoch
            )


class ModelSelection(pl.Callback):
    """Keep the weights chosen by the rule: ``last`` (the final epoch) or ``best_val`` (highest ``val/acc``).

    ``best_val`` copies the state dict in memory whenever validation accuracy improves and restores it when the
    fit ends, so the test split is scored once, on the selected epoch.
    """

    def __init__(self, rule: str = "last", monitor: str = "val/acc"):
        if rule not in ("last", "best_val"):
            raise ValueError(f"unknown model selection rule {rule!r}; choices: last, best_val")
        self.rule, self.monitor = rule, monitor
        self.best = -math.inf
        self.best_state: dict | None = None
        self.selected_epoch = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.rule == "last":
            self.selected_epoch = trainer.current_epoch
            return
        if getattr(pl_module, "last_val_epoch", trainer.current_epoch) != trainer.current_epoch:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            self.selected_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)


class DivergenceGuard(pl.Callback):
    """Stop the run with ``Diverged`` as soon as a training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            raise Diverged(f"training loss became {float(loss)} at epoch {trainer.current_epoch}, batch {batch_idx}")
