"""Feature extraction: a new linear classifier on frozen pretrained features."""

from typing import Any

import torch
from torch import nn

from benchmark.probe_solver import ProbeSolver
from benchmark.strategies.base import ParamGroups, TransferStrategy, head_and_backbone


class LinearProbe(TransferStrategy):
    """Train only a new classifier on the frozen source backbone (Kornblith et al., CVPR 2019).

    The backbone stays in eval mode for the whole run, so BatchNorm statistics and dropout behave exactly as at
    feature-extraction time; only the classifier is in train mode. The harness therefore trains the classifier on
    features computed once per example (``frozen_backbone``; ``trainer.feature_cache=false`` turns that off).

    ``probe``: how the classifier is fit (``benchmark.probe_solver.ProbeSolver``). ``head: solved`` (the default)
    solves multinomial logistic regression on the features to convergence, its L2 strength chosen on validation
    examples, as the field fits probes; ``head: sgd`` trains it with the run's optimiser and budget instead (the
    head every probe had before, kept for comparison under its own run key).
    """

    frozen_backbone = True

    def __init__(self, probe: dict[str, Any] | None = None):
        self.probe = ProbeSolver.from_config(probe)

    def param_groups(self, model: nn.Module) -> ParamGroups:
        model.requires_grad_(False)
        head, _ = head_and_backbone(model)
        for p in head:
            p.requires_grad_(True)
        return [{"params": head, "lr_scale": 1.0}]

    def on_train_epoch_start(
        self, model: nn.Module, epoch: int, total_epochs: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        model.eval()
        model.get_classifier().train()
