"""DANN (Ganin et al., JMLR 2016): domain-adversarial training through a gradient reversal layer."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.losses import DomainDiscriminator, dann_lambda, dann_loss
from benchmark.strategies.adaptation import DomainAdaptation
from benchmark.strategies.base import Step


class Dann(DomainAdaptation):
    """Cross-entropy on the source plus a domain classifier on the pre-logits features, trained through gradient
    reversal: the discriminator learns to tell source from target while the backbone learns to confuse it.

    The reversal coefficient follows the paper's schedule ``2 / (1 + exp(-gamma p)) - 1`` over the training
    progress ``p``; ``weight`` multiplies it (the trade-off of the reversed gradient; the discriminator always
    minimises its own loss at full strength). The discriminator (one hidden layer of ``hidden`` units) is a module of
    the run, optimised with the network at the base learning rate.
    """

    def __init__(self, weight: float = 1.0, gamma: float = 10.0, hidden: int = 256):
        super().__init__(weight)
        self.gamma = float(gamma)
        self.hidden = int(hidden)
        dann_lambda(0.5, self.gamma)  # validates gamma now, before any training

    def extra_modules(self, model: nn.Module, num_classes: int) -> dict[str, nn.Module]:
        return {"discriminator": DomainDiscriminator(model.num_features, self.hidden)}

    def alignment(self, step: Step, z_s, z_t, logits_s, logits_t) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lam = self.weight * dann_lambda(step.progress, self.gamma)
        loss = dann_loss(step.extra["discriminator"], z_s, z_t, lam)
        return loss, {"align_loss": loss, "grl_lambda": torch.tensor(lam)}
