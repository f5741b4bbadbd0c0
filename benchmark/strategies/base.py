"""The one interface every strategy implements; ``scratch`` (the baseline) is a strategy like any other.

A strategy decides what trains in its own hooks, never by ``requires_grad`` alone: BatchNorm running statistics
move in train mode even when the layer's parameters are frozen, so frozen normalisation layers are put in
``eval()`` at every epoch start (``freeze_norm_stats``). The contract test in ``tests/test_strategies.py`` runs
every strategy in ``conf/strategy`` through ``benchmark.job.train_run`` and checks that exactly the parameters left
trainable after ``on_train_epoch_start`` (and its ``extra_modules``) change during training, that frozen
normalisation statistics do not, and that evaluation-only strategies change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from benchmark.models import classifier_prefixes

ParamGroups = list[dict[str, Any]]
"""Optimizer groups: ``{"params": [...], "lr_scale": float}``; the module multiplies the base learning rate."""


@dataclass
class StepOutput:
    """What a strategy's ``training_loss`` returns for one batch: the loss to minimise, the classifier's logits and
    labels of the labelled examples (for ``train/acc``), and extra scalars logged per epoch as ``train/<name>``."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Pretraining:
    """What a strategy's ``pretrain`` hook needs: unlabelled images (already preprocessed; their labels are -1),
    the job's seed, a cache directory and a content key of everything that determines the result."""

    images: Any  # torch Dataset yielding (x, -1)
    seed: int
    cache_dir: Path
    key: str
    accelerator: str = "cpu"


@dataclass
class Step:
    """What a strategy's ``training_loss`` gets besides the batch: the model, the strategy's own trainable modules
    (``extra_modules``, e.g. a domain discriminator, on the model's device) and the training progress in [0, 1]."""

    model: nn.Module
    extra: nn.ModuleDict
    progress: float


class TransferStrategy:
    """Base class: decide which parameters train, at which relative learning rate, with which loss.

    How a run is compared and identified (role, baseline, reference, metric, whether it reads the source's weights,
    seed salt) is not the class's business: it is the ``meta:`` block of the strategy's YAML
    (``benchmark.strategies.meta``). Evaluation-only protocols (nothing trains) implement
    ``benchmark.strategies.evaluation.EvaluationProtocol`` instead.
    """

    frozen_backbone: bool = False
    """True when only the classifier trains and the backbone stays in eval mode for the whole run: the harness then
    runs the backbone once per example and trains the classifier on cached features (``trainer.feature_cache``)."""
    data: str = "labelled"
    """What the run trains on: ``labelled`` (the target's labelled subset) or ``adaptation`` (the source's labelled
    data plus the target's training images without their labels: domain adaptation)."""

    def setup(self, model: nn.Module) -> None:
        """Called once after the source weights are loaded, before the optimizer is built."""

    def param_groups(self, model: nn.Module) -> ParamGroups:
        """All parameters train at the base learning rate unless a subclass says otherwise."""
        model.requires_grad_(True)
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]

    def on_train_epoch_start(
        self, model: nn.Module, epoch: int, total_epochs: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Called at the start of every training epoch, after Lightning put the model in train mode."""
        freeze_norm_stats(model)

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """An extra loss term added to the task loss (e.g. L2-SP); None for none."""
        return None

    def extra_modules(self, model: nn.Module, num_classes: int) -> dict[str, nn.Module]:
        """Trainable modules besides the model (a domain discriminator); the LightningModule registers them (so they
        move to the device, are checkpointed and are optimised at the base learning rate)."""
        return {}

    def training_loss(self, step: Step, batch: Any) -> StepOutput:
        """The loss of one training batch. Default: cross-entropy on a labelled batch ``(x, y)``."""
        x, y = batch
        logits = step.model(x)
        return StepOutput(F.cross_entropy(logits, y), logits, y)

    def pretrain_identity(self) -> dict[str, Any] | None:
        """Everything that determines this strategy's own pretraining (None: it has none). With ``"data":
        "source"`` the images are the source's dataset, otherwise the target's training images (labels never)."""
        return None

    def pretrain(self, model: nn.Module, data: Pretraining) -> dict[str, float]:
        """Called after the source weights are loaded and before training: self-supervised strategies train the
        backbone on unlabelled images here (cached under ``data.key``). Returns metrics for the run."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The strategy's settings, for the run description."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def head_and_backbone(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into the classifier (timm's ``pretrained_cfg['classifier']``) and everything else."""
    heads = classifier_prefixes(model)
    head, backbone = [], []
    for name, p in model.named_parameters():
        (head if name.startswith(heads) else backbone).append(p)
    if not head:
        raise ValueError(f"{type(model).__name__} has no parameters under its classifier prefixes {heads}")
    return head, backbone


def freeze_norm_stats(model: nn.Module) -> None:
    """Put in eval mode every BatchNorm whose affine parameters are all frozen, so its statistics stay fixed."""
    whole_model_frozen = not any(p.requires_grad for p in model.parameters())
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters(recurse=False))
            # a BatchNorm without affine parameters counts as frozen when the whole model is
            if not any(p.requires_grad for p in params) if params else whole_model_frozen:
                module.eval()
