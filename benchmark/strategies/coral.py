"""Deep CORAL (Sun and Saenko, ECCV Workshops 2016): align second-order statistics of source and target."""

from __future__ import annotations

import torch

from benchmark.losses import coral_loss
from benchmark.strategies.adaptation import DomainAdaptation
from benchmark.strategies.base import Step


class Coral(DomainAdaptation):
    """Cross-entropy on the source plus ``weight`` × the CORAL loss ``||C_s - C_t||_F^2 / (4 d^2)`` between the
    covariances of the two batches' outputs of the last layer (the logits, where the paper applies it: fc8).
    The paper sets the weight so that both losses are about equal at the end of training; 1.0 by default."""

    def __init__(self, weight: float = 1.0):
        super().__init__(weight)

    def alignment(self, step: Step, z_s, z_t, logits_s, logits_t) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = coral_loss(logits_s, logits_t)
        return self.weight * loss, {"align_loss": loss}
