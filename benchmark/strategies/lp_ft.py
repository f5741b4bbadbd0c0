"""LP-FT: linear probe first, then fine-tune everything (Kumar et al., ICLR 2022)."""

import math

import torch
from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy, freeze_norm_stats, head_and_backbone


class LpFt(TransferStrategy):
    """Train the head on frozen features for the first ``probe_fraction`` of the epochs, then everything.

    Kumar et al. show that fine-tuning from a random head distorts pretrained features; starting the fine-tune
    from a fitted linear probe keeps them and improves out-of-distribution accuracy. The fine-tuning phase runs at
    ``finetune_lr_scale`` times the base rate (the paper fine-tunes with a smaller rate than it probes with).
    Both phases share the run's budget, so the total number of epochs equals the baseline's.
    """

    def __init__(self, probe_fraction: float = 0.5, finetune_lr_scale: float = 0.1):
        if not 0.0 < probe_fraction < 1.0:
            raise ValueError(f"probe_fraction must be in (0, 1), got {probe_fraction}")
        if finetune_lr_scale <= 0:
            raise ValueError(f"finetune_lr_scale must be > 0, got {finetune_lr_scale}")
        self.probe_fraction = float(probe_fraction)
        self.finetune_lr_scale = float(finetune_lr_scale)

    def probe_epochs(self, total_epochs: int) -> int:
        return min(max(1, math.floor(self.probe_fraction * total_epochs)), max(total_epochs - 1, 1))

    def param_groups(self, model: nn.Module) -> ParamGroups:
        head, backbone = head_and_backbone(model)
        return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr_scale": self.finetune_lr_scale}]

    def on_train_epoch_start(
        self, model: nn.Module, epoch: int, total_epochs: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        head, _ = head_and_backbone(model)
        probing = epoch < self.probe_epochs(total_epochs)
        model.requires_grad_(not probing)
        for p in head:
            p.requires_grad_(True)
        if probing:
            model.eval()
            model.get_classifier().train()
        else:
            freeze_norm_stats(model)
            if optimizer is not None and epoch == self.probe_epochs(total_epochs):
                # The head keeps its probe rate scaled down too: the whole network now fine-tunes gently.
                for group in optimizer.param_groups:
                    group["lr_scale"] = self.finetune_lr_scale
