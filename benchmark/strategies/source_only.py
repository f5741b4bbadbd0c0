"""Domain adaptation's reference: the source model trained on the source labels only, evaluated on the target."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from benchmark.strategies.adaptation import DomainAdaptation, split_batch
from benchmark.strategies.base import Step, StepOutput


class SourceOnly(DomainAdaptation):
    """Fine-tune all layers on the labelled source batches of the adaptation stream and ignore the target images.

    It sees exactly the source batches, initial weights and budget that ``dann``, ``coral`` and ``mmd`` see, so the
    difference between them and ``source_only`` is the adaptation alone. Its delta against ``scratch`` answers
    "does a model trained on the source, without any target label, beat training on the target's few labels?".
    """

    def __init__(self):
        super().__init__(weight=0.0)

    def training_loss(self, step: Step, batch: Any) -> StepOutput:
        xs, ys, _ = split_batch(batch)
        logits = step.model(xs)
        return StepOutput(F.cross_entropy(logits, ys), logits, ys)
