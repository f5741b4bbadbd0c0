"""Self-supervised transfer, feature extraction: SimCLR on unlabelled images, then a linear probe."""

from __future__ import annotations

from typing import Any

from benchmark.strategies.linear_probe import LinearProbe
from benchmark.strategies.simclr import SimCLRPretraining


class SslProbe(SimCLRPretraining, LinearProbe):
    """SimCLR-pretrain the backbone from the baseline's random initialisation on unlabelled images (the target's
    training images by default), freeze it, and train a linear classifier on the labelled subset (Chen et al.,
    ICML 2020, linear evaluation). Compared with scratch, and in the same sweep with supervised source transfer."""

    def __init__(self, probe: dict[str, Any] | None = None, **simclr: Any):
        LinearProbe.__init__(self, probe)
        self._init_simclr(**simclr)
