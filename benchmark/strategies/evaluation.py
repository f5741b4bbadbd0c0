"""The interface of evaluation-only protocols: score the (source or random) model on the target, train nothing.

Clustering and anomaly detection transfer without a single gradient step, so they share none of
``TransferStrategy``'s training hooks. The recipe builds the model, loads the source's weights when the protocol's
``meta.uses_source_weights`` says so, and calls ``evaluate``; the contract test checks that no weight and no
normalisation statistic moves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn


class EvaluationProtocol:
    """Base class of the evaluation-only protocols (``cluster``, ``anomaly`` and their random-init baselines)."""

    def evaluate(
        self, model: nn.Module, splits: Any, train_indices: np.ndarray, prep: Any, seed: int
    ) -> dict[str, float]:
        """Score ``model`` (in eval mode; nothing may change it) on ``splits``; ``train_indices`` are the labelled
        training examples of the run's label budget and seed, ``prep`` the source's preprocessing. Returns metrics."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The protocol's settings, for the run description."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
