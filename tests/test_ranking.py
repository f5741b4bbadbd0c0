"""Source ranking against realised deltas (``benchmark.ranking``, ``python -m benchmark.rank``): the baselines
(parameters, reported ImageNet top-1), Kendall's tau and weighted tau per predictor, and the leave-one-model-out
range, read from runs recorded in a real MLflow store."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.rank import main, source_overrides
from benchmark.ranking import parameter_count, rank_correlations, realised_deltas, reported_top1
from benchmark.report.load import load_runs
from benchmark.sources.zoo import parameter_count as zoo_parameter_count

DELTAS = {"a": 0.40, "b": 0.30, "c": 0.20, "d": 0.10, "e": 0.00}


def _deltas(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"experiment_id": "1", "strategy": "finetune", "label_budget": "5", "source": s,
                          "delta": d, "seeds": 3} for s, d in values.items()])  # fmt: skip


def _row(frame: pd.DataFrame, predictor: str) -> pd.Series:
    return frame.set_index("predictor").loc[predictor]


def test_a_perfect_predictor_scores_one_and_distances_are_negated():
    table = pd.DataFrame({"source": list(DELTAS), "transfer/logme": [5.0, 4.0, 3.0, 2.0, 1.0],
                          "similarity/mmd": [0.1, 0.2, 0.3, 0.4, 0.5]})  # fmt: skip
    corr = rank_correlations(table, _deltas(DELTAS))
    for name in ("transfer/logme", "similarity/mmd"):  # a smaller distance predicts a larger delta: tau = +1
        row = _row(corr, name)
        assert row.sources == 5
        assert [row.kendall_tau, row.weighted_tau, row.loo_min, row.loo_max] == pytest.approx([1.0] * 4)


def test_leave_one_out_range_exposes_a_tau_carried_by_one_model():
    # right about b..e, but ranks the best source (a) last: dropping a makes the predictor perfect
    table = pd.DataFrame({"source": list(DELTAS), "transfer/leep": [0.0, 4.0, 3.0, 2.0, 1.0]})
    row = _row(rank_correlations(table, _deltas(DELTAS)), "transfer/leep")
    assert row.kendall_tau == pytest.approx(0.2)
    assert row.loo_max == pytest.approx(1.0) and row.loo_min < row.kendall_tau
    assert row.weighted_tau < row.kendall_tau  # the error sits at the top rank, which weighted tau weighs most


def test_a_score_constant_up_to_rounding_gets_no_tau():
    # H-score with fewer examples than dimensions: C - 1 for every source, differing in the last bits only
    table = pd.DataFrame({"source": list(DELTAS), "transfer/h_score": [9.0, 9.0 - 1e-13, 9.0 + 1e-13, 9.0, 9.0]})
    row = _row(rank_correlations(table, _deltas(DELTAS)), "transfer/h_score")
    assert row.sources == 5 and math.isnan(row.kendall_tau) and math.isnan(row.loo_min)


def test_baselines_skip_unknown_values_and_need_three_sources():
    table = pd.DataFrame({"source": list(DELTAS), "params": [9, 8, 7, 6, 5],
                          "imagenet_top1": [77.6, 76.7, math.nan, math.nan, math.nan]})  # fmt: skip
    corr = rank_correlations(table, _deltas(DELTAS))
    assert _row(corr, "params").kendall_tau == pytest.approx(1.0)
    top1 = _row(corr, "imagenet_top1")
    assert top1.sources == 2 and math.isnan(top1.kendall_tau) and math.isnan(top1.loo_min)


def test_baselines_of_a_zoo_source_and_a_harness_source():
    zoo, harness = compose_job(["source=efficientnet_lite0_in1k"]), compose_job(["source=synth_digits"])
    assert reported_top1(zoo) == 75.1 and math.isnan(reported_top1(harness))
    # the backbone only: the checkpoint's count less its 1000-class head (1,280 features); test_resnet is ~0.37 M
    assert parameter_count(zoo) == zoo_parameter_count("efficientnet_lite0_in1k") - (1280 * 1000 + 1000)
    assert parameter_count(zoo) > 5 * parameter_count(harness) > 0


def test_pattern_overrides_reach_only_the_matching_sources():
    overrides = ["label_budget=5", "efficientnet_lite*:source.preprocessing.image_size=64", "target.split_seed=0"]
    assert source_overrides("efficientnet_lite1_in1k", overrides) == [
        "label_budget=5", "source.preprocessing.image_size=64", "target.split_seed=0"]  # fmt: skip
    assert source_overrides("synth_digits", overrides) == ["label_budget=5", "target.split_seed=0"]


def _record(client: MlflowClient, exp_id: str, source: str, seed: int, delta: float, **tags: str) -> None:
    run_tags = {"role": "transfer", "target": "digits", "strategy": "linear_probe", "label_budget": "5",
                "source": source, "seed": seed, "run_key": f"{source}-{seed}", **tags}  # fmt: skip
    run_id = tracking.create_run(client, exp_id, f"{source}__s{seed}", run_tags)
    tracking.log_metrics(client, run_id, {"delta/test/acc": delta})
    tracking.end_run(client, run_id)


def test_realised_deltas_average_seeds_of_transfer_runs_on_the_target(store):
    client = tracking.open_store(store)
    exp_id = tracking.ensure_experiment(client, "sweep")
    for seed, delta in enumerate((0.1, 0.3)):
        _record(client, exp_id, "synth_digits", seed, delta)
    _record(client, exp_id, "synth_digits", 9, 5.0, target="shapes")  # another target: not counted
    _record(client, exp_id, "shapes", 0, 0.7, role="baseline")  # not a transfer run
    out = realised_deltas(load_runs(client=client), "digits")
    assert out[["source", "strategy", "label_budget", "seeds"]].values.tolist() == [["synth_digits", "linear_probe",
                                                                                     "5", 2]]  # fmt: skip
    assert out.delta.iloc[0] == pytest.approx(0.2)


@pytest.mark.slow
def test_rank_prints_baselines_and_correlations_with_recorded_deltas(store, tmp_path, capsys):
    client = tracking.open_store(store)
    exp_id = tracking.ensure_experiment(client, "sweep")
    realised = {"efficientnet_lite0_in1k": 0.5, "synth_digits": 0.4, "synth_letters": 0.1, "shapes": -0.1}
    for source, delta in realised.items():
        for seed in range(2):
            _record(client, exp_id, source, seed, delta + 0.01 * seed)
    # short pretraining for the harness sources (s*: synth_digits, synth_letters, shapes), the zoo model at 32 px
    tiny = ["s*:source.weights.recipe.epochs=1", "s*:source.weights.dataset.n_per_class=40", "label_budget=5",
            "efficientnet_lite*:source.preprocessing.image_size=32"]  # fmt: skip
    code = main(["--target", "digits", "--sources", ",".join(realised), "--tracking-uri", store,
                 "--cache-dir", str(tmp_path / "cache"), "--deltas-experiment", "sweep", *tiny])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "Not scored" not in out, out
    assert "imagenet_top1" in out and "75.1" in out and "kendall_tau" in out, out
    run = client.search_runs([client.get_experiment_by_name("rank").experiment_id])[0]
    corr = pd.read_csv(client.download_artifacts(run.info.run_id, "correlations.csv", str(tmp_path)))
    assert set(corr.predictor) >= {"transfer/logme", "transfer/leep", "transfer/nce", "transfer/h_score", "params"}
    params = _row(corr, "params")  # the bigger ImageNet model realised the largest delta; the others tie
    assert params.sources == 4 and params.kendall_tau > 0 and not math.isnan(params.loo_min)
