"""Self-supervised transfer, fine-tuning: SimCLR on unlabelled images, then fine-tune every layer."""

from __future__ import annotations

from typing import Any

from benchmark.strategies.finetune import Finetune
from benchmark.strategies.simclr import SimCLRPretraining


class SslFinetune(SimCLRPretraining, Finetune):
    """SimCLR-pretrain the backbone from the baseline's random initialisation on unlabelled images, then fine-tune
    all layers on the labelled subset (Chen et al., ICML 2020, semi-supervised fine-tuning)."""

    def __init__(self, backbone_lr_scale: float = 1.0, **simclr: Any):
        Finetune.__init__(self, backbone_lr_scale)
        self._init_simclr(**simclr)
