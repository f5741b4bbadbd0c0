"""Multi-kernel MMD (DAN, Long et al., ICML 2015): match source and target feature distributions in an RKHS."""

from __future__ import annotations

import torch

from benchmark.losses import mk_mmd_loss
from benchmark.strategies.adaptation import DomainAdaptation
from benchmark.strategies.base import Step


class Mmd(DomainAdaptation):
    """Cross-entropy on the source plus ``weight`` × the squared multi-kernel MMD (Gaussian kernels at
    ``kernel_mults`` × the batch's mean squared distance, equal weights) between the pre-logits features of the
    source and target batches, estimated over all pairs of the batches (``estimator=biased``) or in linear time
    (``linear``, DAN's estimate)."""

    def __init__(self, weight: float = 1.0, kernel_mults: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
                 estimator: str = "biased"):  # fmt: skip
        super().__init__(weight)
        self.kernel_mults = tuple(float(k) for k in kernel_mults)
        self.estimator = str(estimator)
        mk_mmd_loss(torch.zeros(2, 1), torch.ones(2, 1), self.kernel_mults, self.estimator)  # validate now

    def alignment(self, step: Step, z_s, z_t, logits_s, logits_t) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = mk_mmd_loss(z_s, z_t, self.kernel_mults, self.estimator)
        return self.weight * loss, {"align_loss": loss}
