"""LP-FT: linear probe first, then fine-tune everything (Kumar et al., ICLR 2022)."""

import math
from typing import Any

import torch
from torch import nn

from benchmark.probe_solver import ProbeSolver
from benchmark.strategies.base import ParamGroups, TransferStrategy, freeze_norm_stats, head_and_backbone


class LpFt(TransferStrategy):
    """Fit the head on frozen features, then fine-tune everything from it.

    Kumar et al. show that fine-tuning from a random head distorts pretrained features; starting the fine-tune
    from a fitted linear probe keeps them and improves out-of-distribution accuracy. The fine-tuning runs at
    ``finetune_lr_scale`` times the base rate (the paper fine-tunes with a smaller rate than it probes with).

    ``probe``: with ``head: solved`` (the default, the paper's method: its probe is an L-BFGS logistic regression)
    the head is solved on the frozen features before training (``benchmark.probe_solver``) and the whole budget
    fine-tunes from it, every parameter at the fine-tuning rate. With ``head: sgd`` the head trains on frozen
    features for the first ``probe_fraction`` of the epochs, then everything; both phases share the run's budget.
    """

    def __init__(self, probe_fraction: float = 0.5, finetune_lr_scale: float = 0.1,
                 probe: dict[str, Any] | None = None):  # fmt: skip
        if not 0.0 < probe_fraction < 1.0:
            raise ValueError(f"probe_fraction must be in (0, 1), got {probe_fraction}")
        if finetune_lr_scale <= 0:
            raise ValueError(f"finetune_lr_scale must be > 0, got {finetune_lr_scale}")
        self.probe_fraction = float(probe_fraction)
        self.finetune_lr_scale = float(finetune_lr_scale)
        self.probe = ProbeSolver.from_config(probe)

    def probe_epochs(self, total_epochs: int) -> int:
        if self.probe.solved:  # the head was solved before training: every epoch fine-tunes
            return 0
        return min(max(1, math.floor(self.probe_fraction * total_epochs)), max(total_epochs - 1, 1))

    def param_groups(self, model: nn.Module) -> ParamGroups:
        head, backbone = head_and_backbone(model)
        head_scale = self.finetune_lr_scale if self.probe.solved else 1.0
        return [{"params": head, "lr_scale": head_scale}, {"params": backbone, "lr_scale": self.finetune_lr_scale}]

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
            if optimizer is not None and epoch == self.probe_epochs(total_epochs) and epoch > 0:
                # The head keeps its probe rate scaled down too: the whole network now fine-tunes gently.
                for group in optimizer.param_groups:
                    group["lr_scale"] = self.finetune_lr_scale
