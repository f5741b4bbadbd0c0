"""Lightning callbacks: per-epoch MLflow logging in batches, model selection, divergence guard (each with a plain
method that the in-memory head loop of ``benchmark.train`` calls too)."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from torch import nn

from benchmark.util import atomic_path


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochLogger(pl.Callback):
    """Send each epoch's train/val metrics (the module's ``epoch_metrics``), learning rate and elapsed wall time to
    MLflow.

    ``step`` is the epoch number (after ``epoch_offset``: the epochs of a converged budget's earlier schedules);
    ``time/elapsed_s`` (since the fit started) and ``train/steps`` let reports draw
    curves against wall time and optimisation steps. Epochs are sent in one ``log_batch`` (with the liveness
    heartbeat) at most every ``flush_every_s`` seconds, and always before a checkpoint is written, when the fit
    ends and when it fails: a SQLite round trip costs 5-20 ms, as much as a whole epoch of a head on cached
    features, and a resumed run must find every epoch up to its checkpoint in MLflow.
    """

    def __init__(
        self, client: MlflowClient | None, run_id: str | None, logged_through: int = -1, flush_every_s: float = 1.0,
        epoch_offset: int = 0,
    ):  # fmt: skip
        self.client, self.run_id = client, run_id
        self.epoch_offset = epoch_offset  # MLflow step of this fit's epoch 0 (a converged budget's later schedule)
        self.logged_through = logged_through  # a resumed run already holds these epochs: do not log them twice
        self.flush_every_s = flush_every_s
        self.history: list[dict[str, float]] = []
        self._pending: list[Metric] = []
        self._start = self._last_flush = 0.0
        self._offset = 0.0  # wall time already spent before a resume
        self.logging_s = 0.0  # time spent sending metrics to MLflow
        self._restored = False  # set when Lightning restores this fit from a checkpoint

    def start(self) -> None:
        self._start = self._last_flush = time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._restored = True  # Lightning read a checkpoint: on_train_start records where training continues

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tag ``resumed_from_epoch``: the first epoch this fit trains after restoring a checkpoint (the epochs
        before it, their optimizer state and learning-rate schedule position, came from the checkpoint)."""
        if self._restored and self.client is not None and self.run_id is not None:
            self.client.set_tag(self.run_id, "resumed_from_epoch", str(trainer.current_epoch))

    def elapsed(self) -> float:
        return self._offset + time.perf_counter() - self._start

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self._offset = float(state.get("elapsed", 0.0))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = dict(pl_module.epoch_metrics)  # the epoch's train means, and its val scores when it validated
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.record(trainer.current_epoch, row, trainer.global_step, optimizer)

    def record(
        self, epoch: int, row: dict[str, float], steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Add the epoch's elapsed time, step count and learning rate to ``row``, keep it and queue it for MLflow."""
        row["time/elapsed_s"] = self.elapsed()
        row["train/steps"] = float(steps)
        if optimizer is not None:
            row["train/lr"] = max(g["lr"] for g in optimizer.param_groups)
        row["epoch"] = float(epoch)
        self.history.append(row)
        step = self.epoch_offset + epoch
        if self.client is not None and self.run_id is not None and step > self.logged_through:
            now = int(time.time() * 1000)
            self._pending += [Metric(k, v, now, step) for k, v in row.items() if k != "epoch"]
            if time.perf_counter() - self._last_flush >= self.flush_every_s:
                self.flush()

    def flush(self) -> None:
        """Send the queued epochs: one round trip per 1,000 values (MLflow's batch limit), heartbeat included."""
        self._last_flush = time.perf_counter()
        if not self._pending or self.client is None or self.run_id is None:
            return
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        beat = [RunTag("heartbeat", str(int(time.time())))]
        for i in range(0, len(pending), 1000):
            self.client.log_batch(self.run_id, metrics=pending[i : i + 1000], tags=beat)
        self.logging_s += time.perf_counter() - t0

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self.flush()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.flush()


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
        value = pl_module.epoch_metrics.get(self.monitor)  # in the epoch's row only when the epoch validated
        self.observe(trainer.current_epoch, value is not None, value, pl_module)

    def observe(self, epoch: int, validated: bool, value, module: nn.Module) -> None:
        """The end of ``epoch``; ``value`` is the monitored metric when the epoch was validated."""
        if self.rule == "last":
            self.selected_epoch = epoch
            return
        if validated and value is not None and float(value) > self.best:
            self.best = float(value)
            self.selected_epoch = epoch
            self.best_state = copy.deepcopy(module.state_dict())

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore(pl_module)

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
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp, weights_only=False)  # optimizer and callback state too: a full resume


class DivergenceGuard(pl.Callback):
    """Stop the run with ``Diverged`` as soon as a training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self.check(outputs["loss"] if isinstance(outputs, dict) else outputs, trainer.current_epoch, batch_idx)

    @staticmethod
    def check(loss, epoch: int, batch_idx: int) -> None:
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            raise Diverged(f"training loss became {float(loss)} at epoch {epoch}, batch {batch_idx}")


class RunWatch(pl.Callback):
    """A read-only observer of one training run (``benchmark.job.train_run(..., watch=...)``): a Lightning callback
    of the run's fit that is also shown the model at the stages that happen outside Lightning.

    The strategy contract tests (``tests/test_strategies.py``) audit with it what each strategy changes on the path
    production runs. A watch must not change anything; its one side effect is that a head on cached features
    trains through Lightning instead of the equivalent plain loop (``tests/test_features.py`` checks they agree).
    """

    def on_stage(self, stage: str, model: nn.Module, metrics: dict[str, float]) -> None:
        """``initial``: the seeded initialisation with the source's weights loaded; ``pretrained``: after the
        strategy's own pretraining (``metrics``: what that stage returned, empty when it has none); ``end``: after
        training or evaluation (``metrics``: the run's)."""
