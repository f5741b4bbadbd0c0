"""Feature extraction: a new linear classifier on frozen pretrained features."""

import torch
from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy, head_and_backbone


class LinearProbe(TransferStrategy):
    """Train only a new classifier on the frozen source backbone (Kornblith et al., CVPR 2019).

    The backbone stays in eval mode for the whole run, so BatchNorm statistics and dropout behave exactly as at
    feature-extraction time; only the classifier is in train mode. The harness therefore trains the classifier on
    features computed once per example (``frozen_backbone``; ``trainer.feature_cache=false`` turns that off).
    """

    frozen_backbone = True

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
