"""Budget modes (issue 27): ``fixed`` keeps every earlier key and number; ``converged`` trains complete schedules of
doubling length until validation stops improving, logs the steps reached and the rule's trace, and a cell where a
side stopped at the cap is budget-limited; searched values that cannot change a cell's recipe are warned about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose

from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.convergence import converge
from benchmark.job import execute
from benchmark.preflight import job_warnings
from benchmark.report.cells import summarize
from benchmark.report.load import load_runs
from benchmark.spec import Context
from benchmark.stats import BUDGET_LIMITED
from benchmark.train import Budget

CONVERGED = ["budget.mode=converged", "budget.epochs=1", "trainer.threads=1", "source.weights.recipe.epochs=1",
             "source.weights.dataset.n_per_class=40"]  # fmt: skip


def curve(values: dict[int, float]):
    """A training run whose selected validation accuracy at each schedule length is ``values[steps]``; records the
    lengths it was asked for."""
    asked: list[int] = []

    def train(steps: int) -> tuple[int, float]:
        asked.append(steps)
        return steps, values[steps]

    return train, asked


def test_rule_stops_on_a_plateau_and_is_capped_while_still_rising():
    rising, asked = curve({10: 0.2, 20: 0.4, 40: 0.6, 80: 0.7, 100: 0.75})
    out = converge(10, 100, patience=1, min_delta=0.005, train=rising)
    assert asked == [10, 20, 40, 80, 100] and out.capped and out.steps == 100  # the last schedule is the cap itself
    plateau, asked = curve({10: 0.5, 20: 0.8, 40: 0.802, 80: 0.9})
    out = converge(10, 1000, patience=1, min_delta=0.005, train=plateau)
    assert asked == [10, 20, 40] and not out.capped and out.steps == 40  # 40 gained < min_delta: stop, keep the best
    assert out.metrics() == {"budget/steps": 40.0, "budget/steps_trained": 70.0, "budget/attempts": 3.0,
                             "budget/capped": 0.0}  # fmt: skip
    patient, asked = curve({10: 0.5, 20: 0.5, 40: 0.7, 80: 0.7, 160: 0.7})
    out = converge(10, 1000, patience=2, min_delta=0.0, train=patient)
    assert asked == [10, 20, 40, 80, 160] and out.steps == 40 and not out.capped
    first_over_cap, asked = curve({50: 0.5})
    assert converge(50, 40, 1, 0.0, first_over_cap).capped  # a cap below the first schedule confirms nothing


def test_fixed_mode_keeps_the_keys_of_runs_recorded_before_modes_existed():
    plain = compose_job(["strategy=finetune"])
    fixed = compose_job(["strategy=finetune", "budget.mode=fixed", "budget.cap_steps=99", "budget.patience=3"])
    assert fixed.run_key == plain.run_key and fixed.cell_key == plain.cell_key and fixed.variant == ""
    converged = compose_job(["strategy=finetune", "budget.mode=converged"])
    assert converged.run_key != plain.run_key and converged.baseline_key != plain.baseline_key
    assert converged.variant == "budget.mode=converged"
    steps = compose_job(["strategy=finetune", "budget.steps=300"])
    assert steps.run_key != plain.run_key and steps.budget.plan(10)[1] == 300
    with pytest.raises(ValueError, match="choose one of: fixed, converged"):
        Budget(mode="longer")


@pytest.fixture
def ctx(store, tmp_path):
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "budget_modes"), tmp_path / "cache")


def test_a_side_still_rising_at_the_cap_makes_its_cell_budget_limited(ctx, tmp_path):
    job = compose_job([*CONVERGED, "strategy=finetune", "label_budget=10", "budget.min_steps=10",
                       "budget.cap_steps=20", "budget.min_delta=0"])  # fmt: skip
    out = execute(job, ctx)
    base = ctx.client.get_run(out.baseline_run_id).data
    # scratch after 10 and 20 steps: still learning, and the cap forbids 40
    assert base.metrics["budget/capped"] == 1.0 and base.metrics["budget/steps"] == 20.0
    assert base.metrics["budget/steps_trained"] == 30.0 and base.metrics["budget/attempts"] == 2.0
    history = ctx.client.get_metric_history(out.baseline_run_id, "budget/val")
    assert sorted(m.step for m in history) == [10, 20]
    trace = json.loads(Path(ctx.client.download_artifacts(out.baseline_run_id, "budget/trace.json",
                                                          str(tmp_path))).read_text())  # fmt: skip
    assert [a["steps"] for a in trace["attempts"]] == [10, 20] and trace["capped"] is True
    assert trace["attempts"][1]["val"] > trace["attempts"][0]["val"]  # still rising at the cap
    epochs = ctx.client.get_metric_history(out.baseline_run_id, "train/loss")
    assert len(epochs) == len({m.step for m in epochs}) == 15  # 5 + 10 epochs, the second schedule after the first
    runs = load_runs(client=ctx.client, experiment="budget_modes")
    cells = summarize(runs)
    assert cells["budget_limited"].all() and (cells["verdict"] == BUDGET_LIMITED).all()
    assert cells["scratch_steps"].iloc[0] == 20.0
    at_cap = summarize(runs, at_cap=True)
    assert (at_cap["verdict"] == at_cap["verdict_at_cap"]).all() and (at_cap["verdict"] != BUDGET_LIMITED).all()


def test_a_baseline_that_plateaus_stops_before_the_cap(ctx):
    job = compose_job([*CONVERGED, "strategy=scratch", "label_budget=5", "budget.min_steps=40",
                       "budget.cap_steps=640", "budget.lr=0.01", "budget.min_delta=0.02"])  # fmt: skip
    m = execute(job, ctx).metrics
    assert m["budget/capped"] == 0.0 and m["budget/steps_trained"] < 640
    assert m["budget/steps"] in (40.0, 80.0, 160.0) and m["time/fit_s"] > 0


def test_a_searched_value_that_cannot_change_a_cell_is_warned_about():
    base = ["tuning.trials=2", "label_budget=5", "strategy=finetune"]
    cfg = compose([*base, "+tuning.space.epochs={choices:[4,8,16]}", "~tuning.space.steps"])
    warnings = job_warnings(cfg, dict(cfg.hydra.runtime.choices))
    assert any("budget.epochs [4, 8, 16] cannot change cell digits/finetune/5" in w and "100 steps" in w
               for w in warnings), warnings  # fmt: skip
    assert not job_warnings(compose(base), dict(compose(base).hydra.runtime.choices))  # steps: 100, 200, 400
    cfg = compose([*base, "+tuning.space.patience={choices:[1,2]}"])
    assert any("budget.patience cannot change" in w and "budget.mode=fixed" in w
               for w in job_warnings(cfg, dict(cfg.hydra.runtime.choices)))  # fmt: skip
