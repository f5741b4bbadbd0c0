"""Model selection (docs/guide/daily-use.md: ``selection`` is the logged rule that picks the weights scored on the test
split): ``best_val`` scores the epoch with the highest logged ``val/acc``, ``last`` the final epoch, in both training
loops (Lightning, and ``benchmark.train.fit_in_memory`` for heads on cached features).

The weights actually scored are identified without looking inside the loop: the test split *is* the validation
split, so the test metrics must equal the validation metrics logged for the selected epoch, and for no other epoch.
The data make the validation curve rise, peak in the middle and fall (the training labels lean on a feature the
validation labels use less), so "the first validated epoch", "the last epoch" and "the lowest val/loss" all pick
other weights than ``best_val``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import compose
from hydra.core.hydra_config import HydraConfig
from torch import nn
from torch.utils.data import TensorDataset

from benchmark import tracking
from benchmark.compose import build_job
from benchmark.job import execute
from benchmark.module import Optimization
from benchmark.spec import Context
from benchmark.strategies.base import TransferStrategy
from benchmark.train import Budget, TrainerSettings, fit_and_test, in_memory_features

EPOCHS = 24  # validated every 2nd epoch: 1, 3, ..., 23
BUDGET = Budget(epochs=EPOCHS, min_steps=0, batch_size=64, optimization=Optimization(lr=0.05, warmup_fraction=0.0))


def _split(g: torch.Generator, n: int, weight_of_x1: float, images: bool) -> TensorDataset:
    x = torch.randn(n, 2, generator=g) * torch.tensor([3.0, 0.3])
    y = (x[:, 0] + weight_of_x1 * x[:, 1] > 0).long()
    return TensorDataset(x.reshape(n, 2, 1, 1) if images else x, y)


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@pytest.mark.parametrize("loop", ["in_memory", "lightning"])
@pytest.mark.parametrize("selection", ["best_val", "last"])
def test_the_test_split_is_scored_with_the_selected_epoch(store, loop, selection):
    images = loop == "lightning"  # 4-d inputs are images: they train through Lightning, 2-d features do not
    g = torch.Generator().manual_seed(0)
    train, val = _split(g, 200, 30.0, images), _split(g, 200, 5.0, images)
    assert in_memory_features(train, val, val, TrainerSettings()) == (loop == "in_memory")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2)) if images else nn.Linear(2, 2)
    client = tracking.open_store(store)
    run_id = tracking.create_run(client, tracking.ensure_experiment(client, "selection"), f"{loop}_{selection}", {})
    result = fit_and_test(model, TransferStrategy(), train, val, val, 2, BUDGET, TrainerSettings(), 0, selection,
                          client, run_id)  # fmt: skip

    acc, loss = _history(client, run_id, "val/acc"), _history(client, run_id, "val/loss")
    assert sorted(acc) == list(range(1, EPOCHS, 2))
    best = max(acc, key=lambda e: (acc[e], -e))  # the first epoch with the highest val/acc
    # the curve discriminates between the rules: one peak, neither first nor last, not where val/loss is lowest
    assert list(acc.values()).count(acc[best]) == 1
    assert best not in (min(acc), max(acc), min(loss, key=loss.get))
    expected = best if selection == "best_val" else EPOCHS - 1
    assert result.selected_epoch == expected and result.metrics["selected_epoch"] == expected
    assert result.metrics["test/acc"] == pytest.approx(acc[expected], abs=1e-6)
    assert result.metrics["test/loss"] == pytest.approx(loss[expected], rel=1e-5)
    others = [e for e in acc if e != expected]
    assert all(result.metrics["test/loss"] != pytest.approx(loss[e], rel=1e-5) for e in others)


@pytest.mark.slow
def test_a_real_run_records_the_argmax_of_its_logged_val_curve(store, tmp_path):
    """Through the harness (Hydra composition, ``execute``, a pretrained timm source on the bundled digits, a linear
    probe at a rate high enough for a bumpy curve): the run's ``selected_epoch`` metric is the first epoch of highest
    logged ``val/acc``, and ``selection`` is a param of the run."""
    tiny_source = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40"]
    cfg = compose([*tiny_source, "strategy=linear_probe", "strategy.probe.head=sgd", "selection=best_val",
                   "label_budget=5", "budget.epochs=24", "budget.min_steps=0", "budget.lr=0.3",
                   "scores=false"])  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    client = tracking.open_store(store)
    ctx = Context(client, tracking.ensure_experiment(client, "selection"), tmp_path / "cache")
    outcome = execute(build_job(cfg, dict(cfg.hydra.runtime.choices)), ctx)
    run = client.get_run(outcome.run_id)
    acc = _history(client, outcome.run_id, "val/acc")
    assert sorted(acc) == list(range(1, 24, 2))
    best = max(acc, key=lambda e: (acc[e], -e))
    assert run.data.metrics["selected_epoch"] == best
    assert run.data.params["selection"] == "best_val"
