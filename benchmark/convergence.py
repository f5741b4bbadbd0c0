"""The converged budget's stopping rule (``budget.mode=converged``): train complete schedules of doubling length
until validation stops improving, or the cap is reached.

Equal optimiser steps is neither equal compute nor convergence: He et al. (ICCV 2019, "Rethinking ImageNet
Pre-training") showed from-scratch models catching up with pretrained ones given longer schedules, so a verdict at
a short fixed budget can measure how fast each side converges rather than where it converges. Under this rule each
side of a pair (transfer run, baseline, reference) gets its own length:

1. attempt 0 trains the fixed plan's steps (``Budget.plan``: ``steps``, or ``epochs`` raised to ``min_steps``);
2. attempt ``k + 1`` trains a complete schedule (warm-up and cosine decay over its own length) of twice the steps
   of attempt ``k``, from the same initial weights, on the same batches in the same order;
3. an attempt *improves* when its selected validation accuracy (``val/selected_acc``: the weights the run's
   ``selection`` rule keeps, scored on validation examples only) exceeds the best before it by more than
   ``min_delta``; after ``patience`` attempts in a row without improvement the rule stops: **converged**;
4. the next attempt never trains more than ``cap_steps``; when the rule would need an attempt beyond the cap (the
   last one still improved, or patience is not yet spent) it stops **capped**, and the run's cell is budget-limited.

The run reports the attempt with the highest validation accuracy (the shorter one on a tie): its steps are the
steps the run *reached*; every attempt's steps and validation accuracy are its *trace*; the compute is the sum of
every attempt's training time. Restarting each schedule from the initial weights costs up to twice the reported
length, but every reported model is trained with a complete schedule of its own length, and a doubling that does
not help is the evidence that a longer schedule would not change the answer. Nothing here reads the test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    """One complete schedule: the steps it trained and its selected validation accuracy."""

    steps: int
    val: float


@dataclass
class Outcome:
    """What the rule decided: every attempt in order, the index of the reported one, and whether it was capped."""

    attempts: list[Attempt] = field(default_factory=list)
    chosen: int = 0
    capped: bool = False

    @property
    def steps(self) -> int:
        return self.attempts[self.chosen].steps

    def metrics(self) -> dict[str, float]:
        """``budget/steps`` (reached: the reported attempt's), ``budget/steps_trained`` (all attempts),
        ``budget/attempts`` and ``budget/capped`` (1: the rule stopped at the cap, the cell is budget-limited)."""
        return {
            "budget/steps": float(self.steps),
            "budget/steps_trained": float(sum(a.steps for a in self.attempts)),
            "budget/attempts": float(len(self.attempts)),
            "budget/capped": float(self.capped),
        }

    def trace(self) -> list[dict[str, float]]:
        chosen = self.chosen
        return [{"steps": a.steps, "val": a.val, "chosen": float(i == chosen)} for i, a in enumerate(self.attempts)]


def converge(first_steps: int, cap_steps: int, patience: int, min_delta: float,
             train: Callable[[int], tuple[int, float]]) -> Outcome:  # fmt: skip
    """Run the doubling rule (module docstring). ``train(steps)`` trains one complete schedule of (at least)
    ``steps`` steps from the initial weights and returns ``(steps trained, selected validation accuracy)``."""
    if first_steps < 1:
        raise ValueError(f"the first schedule must train at least one step, got {first_steps}")
    out = Outcome()
    best, misses, steps = -math.inf, 0, first_steps
    while True:
        trained, val = train(steps)
        val = -math.inf if val is None or math.isnan(val) else float(val)
        out.attempts.append(Attempt(int(trained), val))
        if val > best + min_delta or not math.isfinite(best):
            misses = 0
        else:
            misses += 1
        if val > best:
            best, out.chosen = val, len(out.attempts) - 1
        if misses >= patience:
            return out
        longer = min(2 * trained, cap_steps)
        if longer <= trained:  # the next schedule would pass the cap: the rule cannot confirm a plateau
            out.capped = True
            return out
        steps = longer
