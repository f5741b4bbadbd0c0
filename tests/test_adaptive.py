"""Adaptive seeds through a real sweep (docs/tutorials/adaptive-seeds.md): the sweeper launches the design's seeds
only where
the verdict is still open, reads the deltas from the store, and a re-run replays the rounds from the store."""

from __future__ import annotations

from collections import defaultdict

import pytest
from conftest import run_sweep
from mlflow.tracking import MlflowClient
from test_sweep import runs_by_role

from benchmark import sequential, sweep

ARGS = ["source=synth_digits", "target=digits", "strategy=finetune,linear_probe", "label_budget=5",
        "seeds.mode=adaptive", "seeds.min=2", "seeds.max=4", "seed=0"]  # fmt: skip


def _deltas(client: MlflowClient, exp_id: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for run in runs_by_role(client, exp_id)["transfer"]:
        out[run.data.tags["strategy"]][int(run.data.tags["seed"])] = run.data.metrics["delta/test/acc"]
    return out


@pytest.mark.slow  # two adaptive sweeps, ~38 s: CI runs it; the default suite keeps the design's own tests
def test_adaptive_seeds_follow_the_design_and_a_rerun_replays_it(tmp_path, store):
    first = run_sweep(tmp_path, store, ARGS, "first")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    client = MlflowClient(store)
    exp_id = client.get_experiment_by_name("e2e").experiment_id
    deltas = _deltas(client, exp_id)
    # the design the sweep ran, as its state recorded it (the config's boundary shape and futility stop included)
    design = sequential.SequentialDesign(**sweep.find_state(tmp_path / "first").design)
    assert (design.min_seeds, design.max_seeds, design.alpha, design.margin) == (2, 4, 0.05, 0.01)

    # replay the design round by round from the seeds in the store: each round's plan must be what was launched
    have = dict.fromkeys(deltas, 2)
    while True:
        observed = {s: [deltas[s][k] for k in range(have[s])] for s in deltas}
        want = sequential.plan_next_round(observed, design, "test/acc")
        if want == have:
            break
        have = want
    assert {s: sorted(d) for s, d in deltas.items()} == {s: list(range(n)) for s, n in have.items()}
    assert all(2 <= n <= 4 for n in have.values())
    assert f"adaptive seeds: 2 cells, looks {list(design.looks)}" in first.stdout + first.stderr

    # the sweep's verdicts follow the sequential rule on the same deltas (an open cell at the last look: inconclusive)
    decided = sequential.decide({s: [d[k] for k in sorted(d)] for s, d in deltas.items()}, design, "test/acc")
    cells = {r.data.tags["strategy"]: r.data.tags["verdict"] for r in runs_by_role(client, exp_id)["cell"]}
    assert cells == {s: "inconclusive" if c.verdict == "open" else c.verdict for s, c in decided.items()}
    assert "Adaptive seeds: seeds were added only to cells whose verdict was still open" in first.stdout

    again = run_sweep(tmp_path, store, ARGS, "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 trained, {sum(have.values())} reused" in again.stdout  # the same rounds, every run reused
    assert _deltas(client, exp_id) == deltas


def test_an_unknown_seeds_mode_stops_the_sweep_before_training(tmp_path, store):
    result = run_sweep(tmp_path, store, ["strategy=scratch", "seeds.mode=sometimes"])
    assert result.returncode == 2
    assert "seeds.mode='sometimes' is not a valid choice; choose one of: fixed, adaptive" in result.stderr
