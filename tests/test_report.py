"""Reports from a real SQLite store: golden tables, figures that are real PNGs, efficiency, and the A/A calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import compose
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.report import build_report, load_runs, main, summarize

# (source, strategy, budget) -> per-seed (transfer, scratch) test accuracies
CELLS = {
    ("synth_digits", "finetune", "10"): [(0.90, 0.80), (0.92, 0.81), (0.91, 0.79)],
    ("shapes", "linear_probe", "all"): [(0.40, 0.95), (0.42, 0.96), (0.41, 0.95)],
    ("shapes", "finetune", "10"): [(0.80, 0.80), (0.79, 0.81), (0.82, 0.79)],
}


def _write_store(uri: str) -> MlflowClient:
    """Runs as the harness writes them: baselines shared per (budget, seed), curves per epoch."""
    client = MlflowClient(uri)
    exp = tracking.ensure_experiment(client, "golden")
    baselines: dict[tuple[str, int], str] = {}
    for (source, strategy, budget), pairs in CELLS.items():
        for seed, (t_acc, s_acc) in enumerate(pairs):
            bkey = f"base-{budget}-{seed}"
            if (budget, seed) not in baselines:
                tags = {
                    "role": "baseline",
                    "source": "scratch:test_resnet",
                    "target": "digits",
                    "strategy": "scratch",
                    "seed": seed,
                    "label_budget": budget,
                    "run_key": bkey,
                }
                rid = tracking.create_run(client, exp, f"base_{budget}_{seed}", tags)
                _curve(client, rid, s_acc, epochs=4, seconds_per_epoch=1.0)
                tracking.log_metrics(client, rid, {"test/acc": s_acc, "time/fit_s": 4.0, "train/total_steps": 40})
                tracking.end_run(client, rid)
                baselines[(budget, seed)] = rid
            tags = {
                "role": "transfer",
                "source": source,
                "target": "digits",
                "strategy": strategy,
                "seed": seed,
                "label_budget": budget,
                "run_key": f"{source}-{strategy}-{budget}-{seed}",
                "baseline_key": bkey,
            }
            rid = tracking.create_run(client, exp, f"{source}_{strategy}_{budget}_{seed}", tags)
            _curve(client, rid, t_acc, epochs=4, seconds_per_epoch=1.0)
            tracking.log_metrics(client, rid, {"test/acc": t_acc, "time/fit_s": 4.0, "train/total_steps": 40})
            tracking.end_run(client, rid)
    # noise that must be ignored: a failed run and a pretrain run
    failed = tracking.create_run(client, exp, "broken", {"role": "transfer", "source": "x", "run_key": "broken"})
    tracking.end_run(client, failed, "FAILED")
    return client


def _curve(client, run_id, final, epochs, seconds_per_epoch):
    for e in range(epochs):
        value = final * (e + 1) / epochs
        tracking.log_metrics(
            client,
            run_id,
            {"val/acc": value, "time/elapsed_s": (e + 1) * seconds_per_epoch, "train/steps": 10 * (e + 1)},
            step=e,
        )


# Expected values computed independently with scipy.stats.ttest_1samp (one-sided, against +-margin 0.01), Holm by
# hand over the 3 cells, and scipy.stats.t.interval at level alpha * p / p_holm (the interval the verdict used).
GOLDEN = """\
| source       | target | strategy     | labels/class | seeds | failed | diverged | transfer      | scratch       | delta  | CI (Holm level)  | p (Holm) | verdict      |
|--------------|--------|--------------|--------------|-------|--------|----------|---------------|---------------|--------|------------------|----------|--------------|
| shapes       | digits | finetune     | 10           | 3     | 0      | 0        | 0.803 ± 0.009 | 0.800 ± 0.006 | +0.003 | [-0.059, +0.066] | 1        | inconclusive |
| shapes       | digits | linear_probe | all          | 3     | 0      | 0        | 0.410 ± 0.006 | 0.953 ± 0.003 | -0.543 | [-0.569, -0.518] | 0.00012  | negative     |
| synth_digits | digits | finetune     | 10           | 3     | 0      | 0        | 0.910 ± 0.006 | 0.800 ± 0.006 | +0.110 | [+0.074, +0.146] | 0.0066   | positive     |"""


def test_golden_table_from_a_real_store(store, tmp_path):
    client = _write_store(store)
    runs = load_runs("golden", client=client)
    assert set(runs["tags.role"]) == {"transfer", "baseline"} and "broken" not in set(runs["run_name"])
    assert len(runs) == 9 + 6
    report = build_report(runs, tmp_path / "out", client, n_boot=2000)
    assert (tmp_path / "out" / "verdicts.md").read_text().strip() == GOLDEN
    csv = (tmp_path / "out" / "verdicts.csv").read_text().splitlines()
    assert csv[0].startswith("source,target,strategy,labels/class,seeds,failed,diverged,transfer,scratch,delta,CI")
    assert len(csv) == 4
    tex = (tmp_path / "out" / "verdicts.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{negative}" in tex and r"linear\_probe" in tex
    cells = report.cells.set_index(["source", "strategy"])
    assert cells.loc[("shapes", "linear_probe"), "nt_gap"] == pytest.approx(0.543, abs=1e-3)
    # every figure is a real, non-blank PNG
    pngs = [f for f in report.files if f.suffix == ".png"]
    assert {p.name for p in pngs} >= {
        "heatmap_finetune.png",
        "heatmap_linear_probe.png",
        "forest.png",
        "learning_curves.png",
        "time_saved.png",
    }
    from PIL import Image

    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.std() > 5, f"{png.name} looks blank"


def test_time_to_accuracy_from_curves(store, tmp_path):
    client = _write_store(store)
    report = build_report(load_runs("golden", client=client), tmp_path, client, n_boot=200)
    eff = report.efficiency.set_index(["source", "strategy", "seed"])
    # synth_digits seed 0: baseline final val 0.80; transfer curve 0.225, 0.45, 0.675, 0.90 reaches it at epoch 3
    row = eff.loc[("synth_digits", "finetune", 0)]
    assert row.reached and row.epoch_to_target == 3
    assert row.seconds_to_target == 4.0 and row.saved_time == pytest.approx(0.0)
    assert not eff.loc[("shapes", "linear_probe", 0)].reached and math.isnan(
        eff.loc[("shapes", "linear_probe", 0)].saved_time
    )


def test_missing_baselines_are_shown_not_dropped(store):
    client = _write_store(store)
    runs = load_runs("golden", client=client)
    runs = runs[~((runs["tags.role"] == "baseline") & (runs["tags.seed"] == "2") & (runs["tags.label_budget"] == "10"))]
    cells = summarize(runs, n_boot=200).set_index(["source", "strategy"])
    assert cells.loc[("synth_digits", "finetune"), "n"] == 2
    assert cells.loc[("synth_digits", "finetune"), "unpaired"] == 1


def test_cli_writes_tables_and_figures(store, tmp_path, capsys):
    _write_store(store)
    assert main(["--experiment", "golden", "--tracking-uri", store, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "| synth_digits" in out and "positive" in out
    assert (tmp_path / "r" / "forest.png").is_file() and (tmp_path / "r" / "verdicts.tex").is_file()
    with pytest.raises(ValueError, match=r"no MLflow experiment 'nope'.*golden"):
        main(["--experiment", "nope", "--tracking-uri", store])


@pytest.mark.slow
def test_aa_calibration(store, tmp_path):
    """A/A: a strategy identical to scratch (own init and batch order) must be inconclusive in >= 95% of cells."""
    from benchmark.job import Context, execute
    from benchmark.run import build_job

    client = tracking.open_store(store)
    exp = tracking.ensure_experiment(client, "aa")
    ctx = Context(client, exp, tmp_path / "cache")
    targets, budgets, seeds = (
        ["digits", "digits_inverted", "digits_noisy", "digits_rotated"],
        [2, 3, 4, 5, 6],
        [0, 1, 2],
    )
    for target in targets:
        for budget in budgets:
            for seed in seeds:
                cfg = compose(
                    [
                        f"target={target}",
                        "strategy=aa_scratch",
                        f"label_budget={budget}",
                        f"seed={seed}",
                        "budget.epochs=1",
                        "budget.min_steps=8",
                        "budget.batch_size=32",
                    ]
                )
                HydraConfig.instance().set_config(cfg)
                execute(build_job(cfg, dict(cfg.hydra.runtime.choices)), ctx)
    cells = summarize(load_runs("aa", client=client), n_boot=500)
    assert len(cells) == len(targets) * len(budgets)
    assert (cells["n"] == 3).all()
    assert (cells["delta"] != 0).sum() >= len(cells) // 2, "A/A runs must differ in randomness, not be copies"
    inconclusive = (cells["verdict"] == "inconclusive").mean()
    assert inconclusive >= 0.95, cells[["target", "label_budget", "delta", "p_holm", "verdict"]]
