"""Hydra's Optuna sweeper driving the app (docs/tutorials/tuning.md): a real study, a real store. The trials'
objective is
the validation accuracy of the selected weights, never a test metric; the sweep still gets its parent run, its cell
runs and verdicts; a study pointed the wrong way is stopped at preflight."""

from __future__ import annotations

import pytest
import yaml
from conftest import run_sweep
from mlflow.tracking import MlflowClient
from test_sweep import runs_by_role

from benchmark.train import SELECTED_VAL

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the dev extra installs hydra-optuna-sweeper")

STUDY = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=0",
         "budget.lr=tag(log, interval(1.0e-3, 1.0e-2))", "source=synth_digits", "target=digits",
         "strategy=finetune", "label_budget=2", "validation=budget", "scores=false"]  # fmt: skip


@pytest.mark.slow  # three trials, each a transfer run and its baseline, in a subprocess: ~50 s
def test_an_optuna_study_maximises_the_validation_objective_and_the_sweep_keeps_its_verdicts(tmp_path, store):
    result = run_sweep(tmp_path, store, [*STUDY, "hydra.sweeper.direction=maximize"], "study")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(store)
    roles = runs_by_role(client, client.get_experiment_by_name("e2e").experiment_id)
    assert {r.info.status for rs in roles.values() for r in rs} == {"FINISHED"}
    trials = roles["transfer"]
    lrs = {float(r.data.params["budget/lr"]) for r in trials}
    assert len(trials) == 3 and len(lrs) == 3 and all(1.0e-3 <= lr <= 1.0e-2 for lr in lrs)
    # the study's best value is the best trial's validation objective, not its test accuracy
    study = yaml.safe_load((tmp_path / "study" / "optimization_results.yaml").read_text())
    in_order = sorted(trials, key=lambda r: r.info.start_time)
    best = max(in_order, key=lambda r: r.data.metrics[SELECTED_VAL])  # ties: Optuna keeps the first trial
    assert study["best_value"] == pytest.approx(best.data.metrics[SELECTED_VAL], abs=1e-7)
    assert study["best_params"]["budget.lr"] == pytest.approx(float(best.data.params["budget/lr"]))
    assert all(r.data.metrics[SELECTED_VAL] != r.data.metrics["test/acc"] for r in trials) or len(
        {r.data.metrics["test/acc"] for r in trials}) == 1  # fmt: skip
    # each trial is paired with a baseline on the same budget (its lr), and the sweep writes a cell per trial
    assert len(roles["baseline"]) == 3 and len(roles["sweep"]) == 1
    assert {r.data.params["budget/lr"] for r in roles["baseline"]} == {r.data.params["budget/lr"] for r in trials}
    cells = roles["cell"]
    assert len(cells) == 3 and all(c.data.tags["verdict"] == "insufficient seeds" for c in cells)
    assert all(r.info.run_id in {t.data.tags.get("mlflow.parentRunId") for t in trials} for r in roles["sweep"])
    assert "which picks the values of its trials itself" in result.stdout + result.stderr


def test_a_study_that_minimises_the_objective_stops_at_preflight(tmp_path, store):
    result = run_sweep(tmp_path, store, [*STUDY, "hydra.sweeper.direction=minimize"], "study")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert "hydra.sweeper.direction='minimize', but every job returns val/selected_acc" in out
    assert "set hydra.sweeper.direction=maximize" in out and "nothing was trained" in out
