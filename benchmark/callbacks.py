"""Lightning callbacks: per-epoch MLflow logging in one batch, model selection, divergence guard."""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochLogger(pl.Callback):
    """Send each epoch's train/val metrics, learning rate and elapsed wall time to MLflow as one ``log_batch``.

    ``step`` is the epoch number; ``time/elapsed_s`` (since the fit started) and ``train/steps`` let reports draw
    curves against wall time and optimisation steps.
    """

    def __init__(self, client: MlflowClient | None, run_id: str | None, logged_through: int = -1):
        self.client, self.run_id = client, run_id
        self.logged_through = logged_through  # a resumed run already holds these epochs: do not log them twice
        self.history: list[dict[str, float]] = []
        self._start = 0.0
        self._offset = 0.0  # wall time already spent before a resume
        self.logging_s = 0.0  # time spent sending metrics to MLflow

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self._offset + time.perf_counter() - self._start

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self._offset = float(state.get("elapsed", 0.0))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        validated = getattr(pl_module, "last_val_epoch", trainer.current_epoch) == trainer.current_epoch
        stages = ("train/", "val/") if validated else ("train/",)
        row = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(stages) and torch.as_tensor(v).numel() == 1
        }
        row["time/elapsed_s"] = self.elapsed()
        row["train/steps"] = float(trainer.global_step)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is not None:
            row["train/lr"] = max(g["lr"] for g in optimizer.param_groups)
        row["epoch"] = float(trainer.current_epoch)
        self.history.append(row)
        if self.client is not None and self.run_id is not None and trainer.current_epoch > self.logged_through:
            t0 = time.perf_counter()
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, trainer.current_epoch) for k, v in row.items() if k != "epoch"]
            # one round trip per epoch: the curves and the liveness heartbeat together
            self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("heartbeat", str(now // 1000))])
            self.logging_s += time.perf_counter() - t0


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

    def state_dict(self) -> dict:
        return {"best": self.best, "best_state": self.best_state, "selected_epoch": self.selected_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_state = state["best"], state["best_state"]
        self.selected_epoch = state["selected_epoch"]


class EpochCheckpoint(pl.Callback):
    """Write a resumable checkpoint (model, optimizer, loop and callback state) at the end of an epoch, atomically,
    so a run killed mid-training resumes from its last checkpoint instead of from scratch.

    At most one checkpoint per ``every_s`` seconds of training: a run shorter than that never pays for one (it is
    cheaper to redo), a long run loses at most ``every_s`` seconds of work.
    """

    def __init__(self, path: Path, every_s: float = 60.0):
        self.path, self.every_s = Path(path), every_s
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if time.perf_counter() - self._last < self.every_s or trainer.current_epoch + 1 == trainer.max_epochs:
            return
        self._last = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # optimizer and callback state too: a full resume
        os.replace(tmp, self.path)


class DivergenceGuard(pl.Callback):
    """Stop the run with ``Diverged`` as soon as a training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            raise Diverged(f"training loss became {float(loss)} at epoch {trainer.current_epoch}, batch {batch_idx}")
