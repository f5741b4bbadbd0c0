"""Partial fine-tuning: freeze the first k stages (CNNs) or blocks (ViTs), train the rest."""

import torch
from timm.models import group_parameters
from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy, freeze_norm_stats


def stage_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names in depth order, one list per timm coarse group: stem, stage 1 (or block 1), ..., head."""
    groups = group_parameters(model, model.group_matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


class PartialFinetune(TransferStrategy):
    """Freeze the ``frozen_stages`` shallowest parameter groups and fine-tune the rest (Yosinski et al., 2014).

    Groups come from timm's ``group_matcher(coarse=True)``, so the same key works for CNNs and ViTs: group 0 is
    the stem (patch embedding), then one group per stage (CNN) or block (ViT); the classifier is never frozen.
    ``frozen_stages=1`` freezes the stem only; ``frozen_stages=3`` the stem and the first two stages.
    """

    def __init__(self, frozen_stages: int = 2):
        if frozen_stages < 0:
            raise ValueError(f"frozen_stages must be >= 0, got {frozen_stages}")
        self.frozen_stages = int(frozen_stages)

    def param_groups(self, model: nn.Module) -> ParamGroups:
        groups = stage_groups(model)
        if self.frozen_stages >= len(groups):
            raise ValueError(
                f"frozen_stages={self.frozen_stages} would freeze the classifier of {type(model).__name__}, "
                f"which has {len(groups) - 1} freezable groups (stem + stages/blocks); choose 0..{len(groups) - 1}"
            )
        frozen = {n for g in groups[: self.frozen_stages] for n in g}
        trainable = []
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
            if name not in frozen:
                trainable.append(p)
        return [{"params": trainable, "lr_scale": 1.0}]

    def on_train_epoch_start(
        self, model: nn.Module, epoch: int, total_epochs: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        freeze_norm_stats(model)
