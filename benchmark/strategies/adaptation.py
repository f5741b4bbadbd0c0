"""Shared machinery of the domain-adaptation strategies (``source_only``, ``dann``, ``coral``, ``mmd``).

Transductive setting (Pan and Yang, 2010): the run trains on the source's labelled data and on the target's training
images *without their labels* (the harness hands them over with every label set to -1), and the target's labels are
used only for validation curves and the test. Every step draws one labelled source batch and one unlabelled target
batch of the same size; an epoch is one pass over the target images, so the training budget (epochs, minimum steps)
is counted exactly as for the other strategies. All layers train from the source's weights, as in TLlib.

Only that two-domain batch is accepted: a plain labelled batch ``(x, y)`` (a caller of ``fit_and_test`` without
``source_train``) raises, instead of silently aligning a batch with itself and training on target labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.strategies.base import Step, StepOutput, TransferStrategy


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's pre-logits features and the classifier's logits, in one forward pass (``model(x)`` == logits)."""
    z = model.forward_head(model.forward_features(x), pre_logits=True)
    return z, model.get_classifier()(z)


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_source, y_source, x_target)`` from the harness's ``{"source": (x, y), "target": (x, _)}`` batch; the
    target's labels are never returned (they are -1 anyway)."""
    if not (isinstance(batch, dict) and set(batch) == {"source", "target"}):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise TypeError(
            f"domain adaptation trains on {{'source': (x, y), 'target': (x, -1)}} batches, got {got}: "
            "pass the source's labelled data as fit_and_test(..., source_train=...)"
        )
    xs, ys = batch["source"]
    xt = batch["target"][0]
    return xs, ys, xt


class DomainAdaptation(TransferStrategy):
    """Base class: cross-entropy on the source batch plus an alignment term between the domains (``weight`` sets
    its strength; each subclass says how).

    Source and target batches go through the network together (one forward over their concatenation, as in TLlib),
    so BatchNorm statistics see both domains. Subclasses implement ``alignment``.
    """

    data = "adaptation"

    def __init__(self, weight: float = 1.0):
        if not 0.0 <= float(weight) <= 100.0:
            raise ValueError(f"weight must be in [0, 100], got {weight}")
        self.weight = float(weight)

    def training_loss(self, step: Step, batch: Any) -> StepOutput:
        xs, ys, xt = split_batch(batch)
        z, logits = features_and_logits(step.model, torch.cat([xs, xt]))
        n = len(xs)
        task = F.cross_entropy(logits[:n], ys)
        logs = {"task_loss": task.detach()}
        if min(n, len(z) - n) < 2:  # a one-row batch has no covariance or kernel mean: no alignment this step
            return StepOutput(task, logits[:n], ys, logs)
        term, more = self.alignment(step, z[:n], z[n:], logits[:n], logits[n:])
        logs.update({k: v.detach() for k, v in more.items()})
        return StepOutput(task + term, logits[:n], ys, logs)

    def alignment(
        self, step: Step, z_s: torch.Tensor, z_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The term added to the source cross-entropy (weighted) and scalars to log (``align_loss`` unweighted)."""
        raise NotImplementedError
