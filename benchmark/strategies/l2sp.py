"""L2-SP: fine-tuning regularised towards the source weights, not towards zero (Li et al., ICML 2018)."""

import torch
from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy, head_and_backbone


class L2sp(TransferStrategy):
    """Fine-tune everything with the penalty ``alpha/2 ||w − w0||²`` on the backbone (``w0``: the source weights)
    plus ``beta/2 ||w_head||²`` on the new classifier, which has no source weights to stay near.

    Plain weight decay pulls the backbone towards zero, i.e. away from what was transferred; L2-SP pulls it towards
    the starting point. The optimizer's own decoupled weight decay is turned off for every group so that the
    penalty is the only regulariser (the paper's setting).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 0.01):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self._anchor: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._head: list[nn.Parameter] = []

    def setup(self, model: nn.Module) -> None:
        head, backbone = head_and_backbone(model)
        self._anchor = [(p, p.detach().clone()) for p in backbone]
        self._head = head

    def param_groups(self, model: nn.Module) -> ParamGroups:
        model.requires_grad_(True)
        return [{"params": list(model.parameters()), "lr_scale": 1.0, "weight_decay": 0.0}]

    def regularizer(self, model: nn.Module) -> torch.Tensor:
        sp = sum(((p - p0) ** 2).sum() for p, p0 in self._anchor)
        head = sum((p**2).sum() for p in self._head)
        return 0.5 * self.alpha * sp + 0.5 * self.beta * head
