"""Reports from a real SQLite store: golden tables, figures that are real PNGs, efficiency, and the A/A calibration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import built_once, compose, run_entry
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.report import build_report, load_runs, summarize
from benchmark.report.cli import main

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


def test_a_results_page_is_generated_from_a_store_with_its_provenance(finished_sweep, tmp_path):
    """``--page`` writes a docs page: the report's table and figures (linked beside the page), headed by each sweep's
    status, command, commit and host, read from its parent run; the figures it links exist."""
    import re

    from benchmark.report.page import GENERATED

    store = finished_sweep.copy_store(tmp_path)
    page = tmp_path / "docs" / "results" / "e2e.md"
    page.parent.mkdir(parents=True)
    args = ["--experiment", "e2e", "--tracking-uri", store, "--out", str(tmp_path / "r"), "--page", str(page)]
    assert main([*args, "--title", "The e2e sweep"]) == 0
    text = page.read_text()
    assert text.startswith(GENERATED) and "\n# The e2e sweep\n" in text
    client = MlflowClient(store)
    (parent,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id], "tags.role = 'sweep'")
    tags = parent.data.tags
    assert f"sweep `{tags['sweep_id']}` (FINISHED)" in text and f"commit `{tags['git_sha']}`" in text
    assert f"python -m benchmark.run -m {tags['sweep_overrides'].strip()}" in text
    assert (tmp_path / "r" / "verdicts.md").read_text().strip() in text  # the report's own table
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((page.parent / link).is_file() for link in links), links
    assert {Path(link).parent.as_posix() for link in links} == {"e2e"}
    assert main([*args, "--title", "The e2e sweep"]) == 0  # regenerated: its own figures folder is replaced
    (page.parent / "notes").mkdir()  # a folder the page did not write is never deleted
    with pytest.raises(ValueError, match="was not written by --page"):
        main([*args[:-1], str(page.parent / "notes.md")])
    assert (page.parent / "notes").is_dir()


AA_TARGETS = ["digits", "digits_inverted", "digits_noisy", "digits_rotated"]
AA_BUDGETS = list(range(1, 16))  # 4 targets x 15 label budgets = 60 cells, each its own label subsets
AA_SEEDS = 3  # per cell; every cell gets seeds of its own (see aa_shard)


def aa_checks(runs, alpha: float = 0.05) -> dict:
    """The A/A figures: per-cell UNADJUSTED rejections of delta = 0 (two-sided paired t-test at ``alpha``, margin 0)
    against a binomial 99% interval around ``alpha``, and the pooled mean of every seed's delta with its 99%
    t-interval (the pairs are independent: each has its own baseline run)."""
    from scipy import stats

    cells = summarize(runs, alpha=alpha, margin=0.0, n_boot=200)
    rejected = int((cells["p_direction"] < alpha).sum())
    low, high = (int(b) for b in stats.binom.ppf([0.005, 0.995], len(cells), alpha))
    transfer = runs[runs["tags.role"] == "transfer"]
    deltas = transfer["metrics.test/acc"].to_numpy() - transfer["metrics.baseline/test/acc"].to_numpy()
    mean, se = float(deltas.mean()), float(stats.sem(deltas))
    ci = stats.t.interval(0.99, len(deltas) - 1, loc=mean, scale=se)
    return {"cells": len(cells), "n": cells["n"].tolist(), "rejected": rejected, "bound": (low, high),
            "rate": rejected / len(cells), "pooled_mean": mean, "pooled_ci99": ci, "pairs": len(deltas),
            "calibrated": low <= rejected <= high and ci[0] <= 0 <= ci[1]}  # fmt: skip


def aa_shard(target: str, shared_dir: Path, migrated_store: Path) -> MlflowClient:
    """The A/A runs of one target's 15 cells, in a store of their own, trained once per test session: the first test
    that needs them trains them under a lock, a parallel worker that needs them meanwhile waits, the others read.

    A/A: a strategy identical to scratch (own init and batch order). Model initialisation and batch order are seeded
    by (seed, strategy salt) alone, not by target or budget, so cells run on the same seeds share their initial
    networks. Measured with seeds 0, 1, 2 in every cell: the mean delta per seed over the 60 cells was +0.009, +0.014,
    -0.011, about 5 standard errors of data noise apart, and after two seeds the pooled 99% interval excluded 0
    (+0.014 [+0.004, +0.023], 112 pairs). Cell k of the grid (targets outermost) therefore runs on seeds 3k, 3k+1,
    3k+2, whichever shard holds it."""
    import shutil

    from benchmark.compose import build_job
    from benchmark.job import execute
    from benchmark.spec import Context

    def train(folder: Path) -> None:
        shutil.copy(migrated_store, folder / "mlflow.db")
        client = tracking.open_store(f"sqlite:///{folder / 'mlflow.db'}")
        ctx = Context(client, tracking.ensure_experiment(client, "aa"), folder / "cache")
        first = AA_TARGETS.index(target) * len(AA_BUDGETS)
        for rep in range(AA_SEEDS):  # replicates outermost: an interrupted grid still covers every cell
            for k, budget in enumerate(AA_BUDGETS, start=first):
                cfg = compose([f"target={target}", "strategy=aa_scratch", f"label_budget={budget}",
                               f"seed={AA_SEEDS * k + rep}", "budget.epochs=1", "budget.min_steps=2",
                               "budget.batch_size=16", "scores=false", "source.preprocessing.image_size=16"])  # fmt: skip
                HydraConfig.instance().set_config(cfg)
                execute(build_job(cfg, dict(cfg.hydra.runtime.choices)), ctx)

    folder = built_once(shared_dir / "aa" / target, train)
    return tracking.open_store(f"sqlite:///{folder / 'mlflow.db'}")


@pytest.mark.slow
@pytest.mark.parametrize("target", AA_TARGETS)
def test_aa_calibration_cells(target, shared_dir, _migrated_store):
    """One target's A/A cells: every cell has its seeds, all FINISHED, and the runs differ in their randomness. The
    four targets' shards train in parallel workers; ``test_aa_calibration`` judges them together."""
    runs = load_runs("aa", client=aa_shard(target, shared_dir, _migrated_store))
    transfer = runs[runs["tags.role"] == "transfer"]
    assert set(runs["status"]) == {"FINISHED"}
    assert sorted(transfer.groupby("tags.label_budget").size().items()) == sorted(
        (str(b), AA_SEEDS) for b in AA_BUDGETS)  # fmt: skip
    assert (transfer["metrics.delta/test/acc"] != 0).mean() >= 0.5, "A/A runs must differ in randomness, not be copies"


@pytest.mark.slow
def test_aa_calibration(shared_dir, _migrated_store):
    """A/A over 60 cells x 3 seeds of real runs (the four shards of ``test_aa_calibration_cells``). The unadjusted
    per-cell rejection rate must lie in the binomial 99% interval around alpha, and the pooled mean delta's 99%
    interval must contain 0. The same checks must reject the same runs with a planted +0.02 bias (the old
    ">= 95% inconclusive after Holm" test passed such a bias 97.8% of the time)."""
    runs = pd.concat([load_runs("aa", client=aa_shard(t, shared_dir, _migrated_store)) for t in AA_TARGETS],
                     ignore_index=True)  # fmt: skip
    checks = aa_checks(runs)
    print(f"A/A calibration: {checks}")
    assert checks["cells"] == len(AA_TARGETS) * len(AA_BUDGETS) >= 60
    assert set(checks["n"]) == {AA_SEEDS}
    assert checks["calibrated"], checks
    biased = runs.copy()
    is_transfer = biased["tags.role"] == "transfer"
    biased.loc[is_transfer, "metrics.test/acc"] += 0.02
    biased.loc[is_transfer, "metrics.baseline/test/acc"] = runs.loc[is_transfer, "metrics.baseline/test/acc"]
    assert not aa_checks(biased)["calibrated"], "a systematic +0.02 must not pass as calibrated"


# ----------------------------------------------------------------------------------------------------------------
# Issue 14: cells are experiments (cell_key), directions come from the metric schema, lost seeds are shown


def _log(client, exp, name, tags, metrics, status="FINISHED", start_ms=None):
    """A run as the harness records it, through the real store (explicit start time: order matters for dedup)."""
    run = client.create_run(exp, start_time=start_ms, tags={k: str(v) for k, v in tags.items()}, run_name=name)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def _base_tags(seed, budget="5"):
    return {"role": "baseline", "source": "scratch:test_resnet", "target": "digits", "strategy": "scratch",
            "seed": seed, "label_budget": budget, "run_key": f"base-{budget}-{seed}"}  # fmt: skip


def _transfer_tags(seed, cell_key=None, variant=None, budget="5", run_key=None, **extra):
    tags = {"role": "transfer", "source": "synth_digits", "target": "digits", "strategy": "partial_finetune",
            "seed": seed, "label_budget": budget, "baseline_key": f"base-{budget}-{seed}",
            "run_key": run_key or f"t-{cell_key}-{seed}", **extra}  # fmt: skip
    if cell_key is not None:
        tags.update(cell_key=cell_key, variant=variant)
    return tags


def test_cells_are_experiments_not_tag_tuples(store, tmp_path):
    """Two frozen_stages settings share (source, target, strategy, budget): they are two cells with a variant column,
    not one cell of 6 'seeds'; a rerun of the same cell and seed is counted once (the newest)."""
    client = MlflowClient(store)
    exp = tracking.ensure_experiment(client, "cells")
    t = 1_000_000
    for seed, base in enumerate([0.80, 0.81, 0.79]):
        _log(client, exp, f"base{seed}", _base_tags(seed), {"test/acc": base}, start_ms=t + seed)
        _log(client, exp, f"fs1_{seed}", _transfer_tags(seed, "cellA", "frozen_stages=1"), {"test/acc": base + 0.10},
             start_ms=t + 10 + seed)  # fmt: skip
        _log(client, exp, f"fs3_{seed}", _transfer_tags(seed, "cellB", "frozen_stages=3"), {"test/acc": base - 0.20},
             start_ms=t + 20 + seed)  # fmt: skip
    for seed, base in enumerate([0.90, 0.91, 0.89]):  # a second label budget: figures must keep variants apart
        _log(client, exp, f"base10_{seed}", _base_tags(seed, "10"), {"test/acc": base})
        for cell, variant, gain in (("cellA10", "frozen_stages=1", 0.05), ("cellB10", "frozen_stages=3", -0.1)):
            _log(client, exp, f"{cell}_{seed}", _transfer_tags(seed, cell, variant, budget="10"),
                 {"test/acc": base + gain + 0.01 * seed})  # fmt: skip
    # an older run of cellA seed 0 under another run key (e.g. rerun=1): only the newest is counted
    _log(client, exp, "fs1_0_old", _transfer_tags(0, "cellA", "frozen_stages=1", run_key="t-cellA-0-rerun"),
         {"test/acc": 0.20}, start_ms=t - 100)  # fmt: skip
    runs = load_runs("cells", client=client)
    cells = summarize(runs, n_boot=200)
    cells = cells[cells["label_budget"] == "5"].set_index("variant")
    assert sorted(cells.index) == ["frozen_stages=1", "frozen_stages=3"]
    assert cells.loc["frozen_stages=1", "n"] == 3 and cells.loc["frozen_stages=3", "n"] == 3
    assert cells.loc["frozen_stages=1", "delta"] == pytest.approx(0.10)
    assert cells.loc["frozen_stages=1", "duplicates"] == 1
    assert (
        cells.loc["frozen_stages=1", "verdict"] == "positive" and cells.loc["frozen_stages=3", "verdict"] == "negative"
    )
    report = build_report(runs, tmp_path, client, n_boot=200)
    table = (tmp_path / "verdicts.md").read_text()
    assert "| variant " in table and "frozen_stages=3" in table
    assert "only the newest of each was counted" in report.markdown
    assert {"heatmap_partial_finetune__frozen_stages=1.png", "data_efficiency.png"} <= {f.name for f in report.files}
    crossovers = (tmp_path / "crossovers.csv").read_text()
    assert "frozen_stages=1" in crossovers and "frozen_stages=3" in crossovers
    # runs recorded before cell_key existed fall back to the tag tuple (and get no variant column)
    legacy = runs.drop(columns=["tags.cell_key", "tags.variant"])
    legacy = legacy[(legacy["run_name"] != "fs1_0_old") & (legacy["tags.label_budget"] == "5")]
    pooled = summarize(legacy, n_boot=200)
    assert len(pooled) == 1 and pooled.loc[0, "n"] == 3 and pooled.loc[0, "duplicates"] == 3


@pytest.mark.parametrize("metric", ["test/loss", "test/ece"])
def test_lower_is_better_metrics_get_the_right_verdict(store, metric):
    """A transfer run whose loss is 0.30 higher than scratch's is worse: negative verdict, positive NT gap."""
    client = MlflowClient(store)
    exp = tracking.ensure_experiment(client, "lower")
    for seed, base in enumerate([0.50, 0.52, 0.49, 0.51]):
        _log(client, exp, f"b{seed}", _base_tags(seed), {metric: base, "test/acc": 0.8})
        _log(
            client, exp, f"t{seed}", _transfer_tags(seed, "c", ""), {metric: base + 0.30 + 0.01 * seed, "test/acc": 0.8}
        )
    cells = summarize(load_runs("lower", client=client), metric=metric, n_boot=200)
    cell = cells.iloc[0]
    assert cell.delta == pytest.approx(-0.315), "oriented: positive means transfer better"
    assert cell.nt_gap == pytest.approx(0.315) and cell.verdict == "negative"
    assert cell.transfer_mean > cell.scratch_mean  # raw values stay raw
    with pytest.raises(ValueError, match=r"unknown metric 'test/los'.*test/loss"):
        summarize(load_runs("lower", client=client), metric="test/los")


def test_failed_and_diverged_seeds_are_shown_and_mark_the_cell(store, tmp_path):
    client = MlflowClient(store)
    exp = tracking.ensure_experiment(client, "lost")
    for seed in range(5):
        _log(client, exp, f"b{seed}", _base_tags(seed), {"test/acc": 0.80 + 0.01 * (seed % 2)})
    for seed in range(3):
        _log(
            client, exp, f"t{seed}", _transfer_tags(seed, "c", ""), {"test/acc": 0.90 + 0.01 * seed}, start_ms=10 + seed
        )
    _log(client, exp, "t3", _transfer_tags(3, "c", "", diverged="true"), {}, status="FAILED")
    _log(client, exp, "t4", _transfer_tags(4, "c", ""), {}, status="KILLED")
    # a failure that a later run of the same seed replaced is a retry, not a lost seed
    _log(client, exp, "t0_failed", _transfer_tags(0, "c", "", run_key="t-c-0-first"), {}, status="FAILED", start_ms=1)
    assert len(load_runs("lost", client=client)) == 8, "FINISHED only by default"
    runs = load_runs("lost", client=client, include_failed=True)
    cell = summarize(runs, n_boot=200).iloc[0]
    assert (cell.n, cell.failed, cell.diverged, bool(cell.incomplete)) == (3, 1, 1, True)
    report = build_report(runs, tmp_path, client, n_boot=200)
    row = (tmp_path / "verdicts.md").read_text().splitlines()[2]
    assert "| 1      | 1        |" in row and "(incomplete)" in row
    assert "2 seed(s) failed or diverged in 1 cell(s)" in report.markdown
    assert report.headline["report/cells_incomplete"] == 1.0


def _sweep(store, tmp_path, name, run_ids, baseline_ids, monkeypatch):
    """A sweep over already-recorded runs (as when every job was reused), finalised by the real code."""
    from benchmark import sweep
    from benchmark.sweep import write_record

    state = sweep.start(store, "shared", None, tmp_path / name, [], "sha", "test/acc", 0.05, 0.01)
    monkeypatch.delenv(sweep.STATE_ENV)
    sweep.ACTIVE = None
    for i, (rid, bid) in enumerate(zip(run_ids, baseline_ids, strict=True)):
        write_record(
            sweep.record_path(state, i), {"status": "ok", "run_id": rid, "baseline_run_id": bid, "reused": True}
        )
    sweep.finalize(state, echo=False)
    return state


def test_each_sweep_writes_its_own_cell_runs_and_leaves_shared_runs_alone(store, tmp_path, monkeypatch):
    """Two sweeps share cell A's runs; the second adds 7 noise cells, so Holm's family grows and A's verdict changes.
    Each sweep's verdict lives on its own role=cell run; the shared transfer runs carry no verdict of either."""
    client = MlflowClient(store)
    exp = tracking.ensure_experiment(client, "shared")
    bases = [_log(client, exp, f"b{s}", _base_tags(s), {"test/acc": 0.8}) for s in range(3)]
    a = [
        _log(client, exp, f"a{s}", _transfer_tags(s, "A", ""), {"test/acc": 0.8 + d})
        for s, d in enumerate([0.06, 0.08, 0.07])
    ]
    noise = []
    for k in range(7):
        noise += [_log(client, exp, f"n{k}_{s}", _transfer_tags(s, f"N{k}", f"noise={k}"), {"test/acc": 0.8 + d})
                  for s, d in enumerate([0.02, -0.02, 0.001 * k])]  # fmt: skip
    first = _sweep(store, tmp_path, "one", a, bases, monkeypatch)
    second = _sweep(store, tmp_path, "two", a + noise, bases * 8, monkeypatch)

    cells = client.search_runs([exp], "tags.role = 'cell'", max_results=100)
    by_sweep: dict[str, list] = {}
    for c in cells:
        by_sweep.setdefault(c.data.tags["sweep_id"], []).append(c)
    (a1,) = by_sweep[first.sweep_id]
    assert len(by_sweep[second.sweep_id]) == 8
    (a2,) = [c for c in by_sweep[second.sweep_id] if c.data.tags["cell_key"] == "A"]
    assert a1.data.tags["verdict"] == "positive" and a2.data.tags["verdict"] == "inconclusive"
    assert a1.data.tags["mlflow.parentRunId"] == first.parent_run_id
    assert a2.data.tags["mlflow.parentRunId"] == second.parent_run_id
    assert "the 1 cell of this table" in a1.data.tags["holm_family"]
    assert "the 8 cells of this table" in a2.data.tags["holm_family"]
    assert a1.data.metrics["delta"] == pytest.approx(0.07) and a1.data.metrics["n"] == 3
    assert a1.data.metrics["ci_low"] > 0.01 > a2.data.metrics["ci_low"], "the interval each verdict used"
    assert a2.data.tags["run_ids"].split(",") == a
    cell_json = Path(client.download_artifacts(a2.info.run_id, "cell.json", str(tmp_path)))
    assert json.loads(cell_json.read_text())["run_ids"] == a
    # the report of one sweep reads the runs it reused from the parent's runs.json (they carry no sweep_id of it)
    assert len(load_runs("shared", client=client, sweep_ids=[second.sweep_id])) == 3 + len(a) + len(noise)
    for rid in a:  # shared runs are not rewritten by either sweep
        tags = client.get_run(rid).data.tags
        assert "verdict" not in tags and "Cell verdict" not in tags.get("mlflow.note.content", "")


def test_a_verdict_metric_without_a_direction_fails_before_the_sweep_starts(store, tmp_path):
    from benchmark import sweep

    with pytest.raises(ValueError, match=r"unknown metric 'test/accuracy'.*test/acc"):
        sweep.start(store, "bad", None, tmp_path / "s", [], "sha", "test/accuracy", 0.05, 0.01)
    with pytest.raises(ValueError, match=r"verdict.metric='val/selected_acc' has no paired delta.*test/acc"):
        sweep.start(store, "bad", None, tmp_path / "s", [], "sha", "val/selected_acc", 0.05, 0.01)
    assert not (tmp_path / "s").exists()


def test_kendall_tau_over_few_pairs_says_it_cannot_reach_significance():
    import pandas as pd

    from benchmark.report import score_correlations

    def frame(n):
        cells = pd.DataFrame({"source": [f"s{i}" for i in range(n)], "target": "digits", "strategy": "finetune",
                              "label_budget": "5", "variant": "", "delta": np.linspace(-0.1, 0.1, n)})  # fmt: skip
        scores = pd.DataFrame({"source": [f"s{i}" for i in range(n)], "target": "digits",
                               "transfer/logme": np.arange(n, dtype=float), "similarity/mmd": np.arange(n, 0, -1.0)})  # fmt: skip
        return score_correlations(cells, scores).set_index("score")

    four = frame(4)
    assert four.loc["transfer/logme", "kendall_tau"] == pytest.approx(1.0)
    assert four.loc["similarity/mmd", "kendall_tau"] == pytest.approx(1.0), "a distance is oriented: lower is better"
    assert four.loc["transfer/logme", "min_p"] == pytest.approx(2 / 24)
    assert "cannot reach significance" in four.loc["transfer/logme", "note"]
    five = frame(5)
    assert five.loc["transfer/logme", "min_p"] == pytest.approx(2 / 120) and five.loc["transfer/logme", "note"] == ""


# ----------------------------------------------------------------------------------------------------------------
# Configuration, order, cell runs, efficiency and crossovers, against values computed by hand from the store


def _record(client, exp: str, name: str, tags: dict, metrics: dict, curve=()) -> str:
    """One FINISHED run; ``curve`` is (val/acc, time/elapsed_s) per epoch, 10 optimiser steps an epoch."""
    rid = tracking.create_run(client, exp, name, tags)
    for e, (acc, elapsed) in enumerate(curve):
        values = {"val/acc": acc, "time/elapsed_s": elapsed, "train/steps": 10 * (e + 1)}
        tracking.log_metrics(client, rid, values, step=e)
    tracking.log_metrics(client, rid, metrics)
    tracking.end_run(client, rid)
    return rid


def _write_cells(client, exp: str, transfer: dict, scratch: dict, curves: dict | None = None, reverse=False) -> dict:
    """Runs as the harness records them. ``transfer`` maps (source, strategy, budget) to per-seed metrics,
    ``scratch`` maps a budget to per-seed metrics of the baseline that every cell of that budget shares (a float is
    ``test/acc``); ``curves`` maps run names to their curves. ``reverse`` creates the runs in the opposite order.
    Returns run name -> run id."""
    specs = []
    for budget, seeds in scratch.items():
        for seed, m in enumerate(seeds):
            tags = {"role": "baseline", "source": "scratch:test_resnet", "target": "digits", "strategy": "scratch",
                    "seed": seed, "label_budget": budget, "run_key": f"base-{budget}-{seed}"}  # fmt: skip
            specs.append((f"base_{budget}_{seed}", tags, m))
    for (source, strategy, budget), seeds in transfer.items():
        for seed, m in enumerate(seeds):
            tags = {"role": "transfer", "source": source, "target": "digits", "strategy": strategy, "seed": seed,
                    "label_budget": budget, "run_key": f"{source}-{strategy}-{budget}-{seed}",
                    "baseline_key": f"base-{budget}-{seed}"}  # fmt: skip
            specs.append((f"{source}_{strategy}_{budget}_{seed}", tags, m))
    ids = {}
    for name, tags, m in reversed(specs) if reverse else specs:
        metrics = dict(m) if isinstance(m, dict) else {"test/acc": m}
        ids[name] = _record(client, exp, name, tags, metrics, (curves or {}).get(name, ()))
    return ids


def _verdicts(cells) -> dict[tuple[str, str], str]:
    return {(c.source, c.strategy): c.verdict for c in cells.itertuples()}


# one cell, deltas +0.09, +0.10, +0.11 on test/acc (t-test p = 0.0033, 95% CI [+0.075, +0.125]) but -0.10, -0.10,
# -0.09 on test/f1_macro
CLEAR = {("synth_digits", "finetune", "5"): [{"test/acc": a, "test/f1_macro": f} for a, f in
                                             ((0.89, 0.70), (0.92, 0.71), (0.89, 0.69))]}  # fmt: skip
CLEAR_SCRATCH = {"5": [{"test/acc": a, "test/f1_macro": f} for a, f in ((0.80, 0.80), (0.82, 0.81), (0.78, 0.78))]}
# one cell, deltas +0.05, +0.10, +0.15: p = 0.074; 95% CI [-0.024, +0.224], 80% CI [+0.046, +0.154]
BORDERLINE = {("synth_digits", "finetune", "5"): [0.85, 0.92, 0.93]}


@pytest.mark.parametrize("via", ["summarize", "cli"])
def test_verdict_metric_alpha_and_margin_change_the_verdicts(store, tmp_path, via):
    """README: ``verdict.metric``, ``verdict.alpha`` and ``verdict.margin`` change the metric, the level and the
    margin. Whatever the exact rule, each override must reach the computation and move the verdict the way any sane
    rule would."""
    client = MlflowClient(store)
    _write_cells(client, tracking.ensure_experiment(client, "clear"), CLEAR, CLEAR_SCRATCH)
    _write_cells(client, tracking.ensure_experiment(client, "borderline"), BORDERLINE, {"5": [0.80, 0.82, 0.78]})

    def cell(experiment: str, **options) -> dict:
        if via == "summarize":
            (row,) = summarize(load_runs(experiment, client=client), n_boot=200, **options).to_dict("records")
            return row
        flags = [f"--{k}={v}" for k, v in options.items()]
        out = tmp_path / f"{experiment}{len(list(tmp_path.iterdir()))}"
        assert main(["--experiment", experiment, "--tracking-uri", store, "--out", str(out), *flags]) == 0
        (row,) = pd.read_csv(out / "cells.csv").to_dict("records")
        return row

    default = cell("clear")
    assert default["verdict"] == "positive" and default["delta"] == pytest.approx(0.10)
    assert cell("clear", margin=0.01)["verdict"] == "positive"
    assert cell("clear", margin=0.2)["verdict"] != "positive"  # the practical margin exceeds the whole effect
    assert cell("clear", alpha=1e-4)["verdict"] not in ("positive", "negative")  # 99.99% interval spans 0
    f1 = cell("clear", metric="test/f1_macro")
    assert f1["metric"] == "test/f1_macro" and f1["delta"] == pytest.approx(-0.29 / 3)
    assert f1["transfer_mean"] == pytest.approx(0.70) and f1["scratch_mean"] == pytest.approx(2.39 / 3)
    assert f1["verdict"] == "negative"
    assert cell("borderline")["verdict"] not in ("positive", "negative")
    assert cell("borderline", alpha=0.2)["verdict"] == "positive"  # a looser level makes the same deltas count


def test_run_order_never_changes_cells_or_verdicts(store, tmp_path):
    """README: verdicts are computed from recorded runs, so run order never matters: the same runs recorded in the
    opposite order, and the loaded rows in any order, give identical statistics."""
    client = MlflowClient(store)
    _write_cells(client, tracking.ensure_experiment(client, "forward"), SWEEP_CELLS, SWEEP_SCRATCH)
    _write_cells(client, tracking.ensure_experiment(client, "backward"), SWEEP_CELLS, SWEEP_SCRATCH, reverse=True)
    runs = load_runs("forward", client=client)
    reference = summarize(runs, n_boot=2000)
    assert len(reference) == 4  # (a bootstrap interval needs >= 10 seeds: none here, see benchmark/stats.py)
    rng = np.random.default_rng(0)
    for _ in range(3):
        shuffled = runs.iloc[rng.permutation(len(runs))].reset_index(drop=True)
        pd.testing.assert_frame_equal(summarize(shuffled, n_boot=2000), reference)
    backward = summarize(load_runs("backward", client=client), n_boot=2000)
    pd.testing.assert_frame_equal(backward.drop(columns="run_ids"), reference.drop(columns="run_ids"))
    a = build_report(runs.iloc[::-1].reset_index(drop=True), tmp_path / "a", client, n_boot=2000)
    b = build_report(load_runs("backward", client=client), tmp_path / "b", client, n_boot=2000)
    assert (tmp_path / "a" / "verdicts.md").read_text() == (tmp_path / "b" / "verdicts.md").read_text()
    assert a.headline == b.headline


# A sweep's cells (target digits, 5 labels/class, one scratch baseline per seed with final val/acc 0.70, 0.72, 0.68,
# 40 steps in 10.0 s). Transfer runs log 10 steps and 1.5 s an epoch.
SWEEP_SCRATCH = {"5": [0.80, 0.82, 0.78]}
SWEEP_CELLS = {
    ("synth_digits", "finetune", "5"): [0.90, 0.93, 0.87],  # +0.10 +0.11 +0.09: positive
    ("shapes", "linear_probe", "5"): [0.40, 0.41, 0.39],  # -0.40 -0.41 -0.39: negative
    ("shapes", "finetune", "5"): [0.85, 0.76, 0.79],  # +0.05 -0.06 +0.01: inconclusive (95% CI +-0.138)
    ("synth_digits", "linear_probe", "5"): [0.85],  # one seed: insufficient seeds
}
EXPECTED_VERDICTS = {
    ("synth_digits", "finetune"): "positive",
    ("shapes", "linear_probe"): "negative",
    ("shapes", "finetune"): "inconclusive",
    ("synth_digits", "linear_probe"): "insufficient seeds",
}
SECONDS = (1.5, 3.0, 4.5, 6.0)
SWEEP_CURVES = {
    **{f"base_5_{s}": list(zip((0.3, 0.5, 0.6, final), (2.5, 5.0, 7.5, 10.0), strict=True))
       for s, final in enumerate((0.70, 0.72, 0.68))},
    "synth_digits_finetune_5_0": list(zip((0.71, 0.80, 0.85, 0.90), SECONDS, strict=True)),  # epoch 0: 10 steps, 1.5 s
    "synth_digits_finetune_5_1": list(zip((0.60, 0.75, 0.80, 0.90), SECONDS, strict=True)),  # epoch 1: 20 steps, 3.0 s
    "synth_digits_finetune_5_2": list(zip((0.50, 0.60, 0.70, 0.80), SECONDS, strict=True)),  # epoch 2: 30 steps, 4.5 s
    **{f"shapes_linear_probe_5_{s}": list(zip((0.20, 0.30, 0.35, 0.40), SECONDS, strict=True)) for s in range(3)},
    "shapes_finetune_5_0": list(zip((0.30, 0.50, 0.60, 0.70), SECONDS, strict=True)),  # equals 0.70 at epoch 3
    "shapes_finetune_5_1": list(zip((0.30, 0.50, 0.60, 0.71), SECONDS, strict=True)),  # never reaches 0.72
    "shapes_finetune_5_2": list(zip((0.30, 0.50, 0.60, 0.67), SECONDS, strict=True)),  # never reaches 0.68
    "synth_digits_linear_probe_5_0": list(zip((0.60, 0.75, 0.70, 0.70), SECONDS, strict=True)),  # epoch 1
}  # fmt: skip
# (source, strategy, seed) -> (epoch, steps, seconds to the baseline's final val/acc); saved = 1 - x / baseline's
REACHED = {
    ("synth_digits", "finetune", 0): (0, 10, 1.5),
    ("synth_digits", "finetune", 1): (1, 20, 3.0),
    ("synth_digits", "finetune", 2): (2, 30, 4.5),
    ("shapes", "finetune", 0): (3, 40, 6.0),
    ("synth_digits", "linear_probe", 0): (1, 20, 3.0),
}


def _sweep_store(client, exp: str, f1_shift: dict | None = None) -> dict:
    """SWEEP_CELLS with curves, fit times and steps; ``test/f1_macro`` = ``test/acc`` − 0.05, except for the cells
    in ``f1_shift`` (cell -> per-seed f1 delta against the baseline)."""

    def with_extras(acc: float, fit_s: float, f1: float) -> dict:
        return {"test/acc": acc, "test/f1_macro": f1, "time/fit_s": fit_s, "train/total_steps": 40}

    scratch = {b: [with_extras(a, 10.0, a - 0.05) for a in accs] for b, accs in SWEEP_SCRATCH.items()}
    transfer = {}
    for cell, accs in SWEEP_CELLS.items():
        shifts = (f1_shift or {}).get(cell)
        base = SWEEP_SCRATCH[cell[2]]
        f1s = [a - 0.05 for a in accs] if shifts is None else [b - 0.05 + d for b, d in zip(base, shifts, strict=True)]
        transfer[cell] = [with_extras(a, 6.0, f) for a, f in zip(accs, f1s, strict=False)]
    return _write_cells(client, exp, transfer, scratch, SWEEP_CURVES)


def test_efficiency_counts_steps_and_seconds_to_the_baselines_final_val_acc(store, tmp_path):
    """docs/how-to/reports.md: efficiency.csv has, for each transfer run, the optimiser steps and seconds to reach its
    baseline's final val accuracy and the share of the baseline's training that saves; time_saved.png shows it."""
    client = MlflowClient(store)
    _sweep_store(client, tracking.ensure_experiment(client, "efficiency"))
    report = build_report(load_runs("efficiency", client=client), tmp_path, client, n_boot=200)
    eff = pd.read_csv(tmp_path / "efficiency.csv").set_index(["source", "strategy", "seed"])
    assert len(eff) == 10 and (tmp_path / "time_saved.png").is_file()
    for (source, strategy, seed), row in eff.iterrows():
        assert row.baseline_steps == 40 and row.baseline_fit_s == 10.0 and row.transfer_fit_s == 6.0
        assert row.target_value == pytest.approx((0.70, 0.72, 0.68)[seed])
        if (source, strategy, seed) not in REACHED:
            assert not row.reached and math.isnan(row.saved_time) and math.isnan(row.saved_steps)
            continue
        epoch, steps, seconds = REACHED[(source, strategy, seed)]
        assert row.reached and row.epoch_to_target == epoch
        assert row.steps_to_target == steps and row.seconds_to_target == pytest.approx(seconds)
        assert row.saved_steps == pytest.approx(1 - steps / 40) and row.saved_time == pytest.approx(1 - seconds / 10)
    early = eff.loc[("synth_digits", "finetune", 0)]
    assert early.saved_steps == pytest.approx(0.75) and early.saved_time == pytest.approx(0.85)
    # medians over the 5 runs that reached it: time .85 .70 .55 .40 .70, steps .75 .50 .25 .00 .50
    assert report.headline["report/reached_baseline_frac"] == pytest.approx(0.5)
    assert report.headline["report/time_saved_median"] == pytest.approx(0.70)
    assert report.headline["report/steps_saved_median"] == pytest.approx(0.50)
    assert "5 of 10 transfer runs reached it; time saved: median 70 %" in report.markdown


def _finalized_sweep(store: str, tmp_path, overrides: list[str], f1_shift: dict | None = None):
    """A sweep as ``python -m benchmark.run -m <overrides>`` runs it, minus the training: the real Hydra config,
    the entry point's callback (parent run and sweep state), one job record per transfer run (as ``run_job`` writes
    them) pointing at runs recorded beforehand, then the callback's end-of-sweep hook."""
    from benchmark import sweep
    from benchmark.hydra_callback import SweepCallback
    from benchmark.sweep import write_record

    client = MlflowClient(store)
    ids = _sweep_store(client, tracking.ensure_experiment(client, "configured"), f1_shift)
    config = compose([f"tracking.uri={store}", "tracking.experiment=configured", "preflight=false",
                      f"tracking.artifact_root={tmp_path / 'artifacts'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      *overrides])  # fmt: skip
    callback = SweepCallback()
    callback.on_multirun_start(config)
    state = sweep.ACTIVE
    transfer = [(name, rid) for name, rid in ids.items() if not name.startswith("base_")]
    for num, (name, rid) in enumerate(transfer):
        seed = int(name.rsplit("_", 1)[1])
        write_record(sweep.record_path(state, num), {"name": name, "status": "ok", "run_id": rid, "reused": False,
                                                     "baseline_run_id": ids[f"base_5_{seed}"]})  # fmt: skip
    callback.on_multirun_end(config)
    assert sweep.ACTIVE is None
    return client, client.get_run(state.parent_run_id), ids


def _cell_runs(client, parent) -> dict[tuple[str, str], object]:
    """The sweep's ``role=cell`` runs (children of its parent run), by (source, strategy)."""
    cells = client.search_runs(
        [parent.info.experiment_id], f"tags.role = 'cell' and tags.sweep_id = '{parent.data.tags['sweep_id']}'"
    )
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in cells)
    return {(c.data.tags["source"], c.data.tags["strategy"]): c for c in cells}


def test_a_sweeps_cell_runs_carry_its_cells_verdicts_and_headline_metrics(store, tmp_path):
    """README: each cell of a sweep gets a ``role=cell`` run with its verdict and its runs' ids, shared child runs
    carry none; the parent run holds the report and headline metrics (``report/cells_negative``,
    ``report/time_saved_median``...), here checked against the hand-computed values."""
    client, parent, ids = _finalized_sweep(store, tmp_path, [])
    assert parent.info.status == "FINISHED"
    cells = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/cells.csv", str(tmp_path)))
    assert _verdicts(cells) == EXPECTED_VERDICTS
    cell_runs = _cell_runs(client, parent)
    assert set(cell_runs) == set(EXPECTED_VERDICTS)
    for (source, strategy), verdict in _verdicts(cells).items():
        names = [n for n in ids if n.startswith(f"{source}_{strategy}_")]
        run = cell_runs[(source, strategy)]
        assert run.data.tags["verdict"] == verdict
        assert sorted(run.data.tags["run_ids"].split(",")) == sorted(ids[n] for n in names)
    assert not [n for n in ids if "verdict" in client.get_run(ids[n]).data.tags], "shared runs are not rewritten"
    m = parent.data.metrics
    assert m["report/cells_positive"] == 1 and m["report/cells_negative"] == 1
    assert m["report/cells_inconclusive"] == 1 and m["report/cells_insufficient_seeds"] == 1
    assert m["sweep/jobs"] == 10 and m["sweep/cells"] == 4 and m["sweep/failed"] == 0
    assert m["report/reached_baseline_frac"] == pytest.approx(0.5)
    assert m["report/time_saved_median"] == pytest.approx(0.70)
    assert m["report/steps_saved_median"] == pytest.approx(0.50)
    eff = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/efficiency.csv", str(tmp_path)))
    assert int(eff["reached"].sum()) == len(REACHED)


@pytest.mark.parametrize(
    "override",
    ["verdict.margin=0.2", "verdict.alpha=1.0e-4", "verdict.metric=test/f1_macro"],
)
def test_verdict_overrides_reach_a_sweeps_verdicts(store, tmp_path, override):
    """``verdict.*`` overrides on the command line reach the verdicts of a sweep's report and cell runs."""
    a = ("synth_digits", "finetune", "5")
    client, parent, _ = _finalized_sweep(store, tmp_path, [override], f1_shift={a: (-0.10, -0.11, -0.09)})
    cells = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/cells.csv", str(tmp_path)))
    verdicts = _verdicts(cells)
    assert _cell_runs(client, parent)[a[:2]].data.tags["verdict"] == verdicts[a[:2]]
    if override.startswith("verdict.margin"):  # 0.2 exceeds the positive cell's +0.10, not the negative's -0.40
        assert verdicts[a[:2]] != "positive" and verdicts[("shapes", "linear_probe")] == "negative"
    elif override.startswith("verdict.alpha"):  # a 99.99% interval spans 0 with 3 seeds
        assert verdicts[a[:2]] not in ("positive", "negative")
        assert verdicts[("shapes", "linear_probe")] not in ("positive", "negative")
    else:  # on test/f1_macro the positive cell is -0.10: negative
        assert set(cells["metric"]) == {"test/f1_macro"}
        assert cells.set_index(["source", "strategy"]).loc[a[:2], "delta"] == pytest.approx(-0.10)
        assert verdicts[a[:2]] == "negative" and parent.data.metrics["report/cells_negative"] == 2
        assert parent.data.metrics["report/cells_positive"] == 0


def test_crossover_is_the_first_budget_where_transfer_stops_helping(store, tmp_path):
    """docs/how-to/reports.md: data_efficiency.png marks, and crossovers.csv lists, the budget where transfer stops
    helping (the smallest budget above a helping one where the mean delta is <= 0), budgets in numeric order."""
    budgets = ["1", "5", "20", "100", "all"]
    scratch = {b: [0.50 + 0.1 * i, 0.52 + 0.1 * i] for i, b in enumerate(budgets)}
    deltas = {
        "finetune": (0.2, 0.1, -0.05, -0.02, -0.01),  # helps at 1 and 5, not at 20: crossover 20
        "lp_ft": (0.1, 0.0, 0.1, 0.1, 0.1),  # a zero delta at 5 counts as not helping: crossover 5
        "linear_probe": (-0.3, -0.2, 0.05, 0.05, 0.05),  # only helps from 20 on: no crossover
        "partial_finetune": (-0.1, -0.1, -0.1, -0.1, -0.1),  # never helps: no crossover
    }
    transfer = {
        ("synth_digits", strategy, b): [s + d[i] for s in scratch[b]]
        for strategy, d in deltas.items()
        for i, b in enumerate(budgets)
    }
    client = MlflowClient(store)
    _write_cells(client, tracking.ensure_experiment(client, "crossover"), transfer, scratch)
    report = build_report(load_runs("crossover", client=client), tmp_path, client, n_boot=200)
    assert tmp_path / "data_efficiency.png" in report.files
    crossovers = pd.read_csv(tmp_path / "crossovers.csv", dtype=str, keep_default_na=False)
    assert dict(zip(crossovers["strategy"], crossovers["crossover"], strict=True)) == {
        "finetune": "20",
        "lp_ft": "5",
        "linear_probe": "",
        "partial_finetune": "",
    }


@pytest.mark.slow
def test_a_sweep_in_another_job_order_records_the_same_results_and_verdicts(store, tmp_path):
    """The same real sweep (source pretraining, baselines, fine-tune and linear probe, 2 seeds) launched in the
    opposite job order, into its own store and cache: every run key gets the same metrics, every cell the same
    statistics and verdict, on its table and on its cell run."""
    import os
    import shutil
    import sys

    from conftest import ROOT

    tiny = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=1",
            "budget.min_steps=6", "budget.batch_size=32", "source=synth_digits", "label_budget=5",
            "trainer.threads=1"]  # fmt: skip
    orders = {"forward": ["strategy=finetune,linear_probe", "seed=0,1"],
              "backward": ["strategy=linear_probe,finetune", "seed=1,0"]}  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    results = {}
    for name, order in orders.items():
        uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        (tmp_path / name).mkdir()
        shutil.copy(store.removeprefix("sqlite:///"), tmp_path / name / "mlflow.db")
        cmd = [sys.executable, "-m", "benchmark.run", "-m", *order, *tiny, f"tracking.uri={uri}",
               "tracking.experiment=order", f"tracking.artifact_root={tmp_path / name / 'artifacts'}",
               f"cache_dir={tmp_path / name / 'cache'}", f"hydra.sweep.dir={tmp_path / name / 'sweep'}"]  # fmt: skip
        done = run_entry(cmd, cwd=ROOT, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("order").experiment_id], max_results=100)
        parent = next(r for r in runs if r.data.tags["role"] == "sweep")
        jobs = {r.data.tags["run_key"]: r for r in runs if r.data.tags["role"] in ("transfer", "baseline")}
        cells = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/cells.csv", str(tmp_path / name)))
        verdicts = {r.data.tags["cell_key"]: r.data.tags["verdict"] for r in runs if r.data.tags["role"] == "cell"}
        results[name] = (jobs, cells, verdicts)
    (forward, cells_f, verdicts_f), (backward, cells_b, verdicts_b) = results["forward"], results["backward"]
    assert sorted(forward) == sorted(backward) and len(forward) == 4 + 2
    for key, run in forward.items():
        other = backward[key]
        for metric in ("test/acc", "test/loss", "val/acc", "delta/test/acc"):
            assert run.data.metrics.get(metric) == other.data.metrics.get(metric), (run.info.run_name, metric)
        assert run.data.tags["cell_key"] == other.data.tags["cell_key"]
    timed = [c for c in cells_f if c.endswith("_fit_s")]  # wall seconds of the fits: the one thing that may differ
    assert timed and (cells_f[timed] > 0).all().all()
    pd.testing.assert_frame_equal(cells_f.drop(columns=timed), cells_b.drop(columns=timed))
    assert len(verdicts_f) == 2 and verdicts_f == verdicts_b
    assert len(cells_f) == 2 and set(cells_f["n"]) == {2}


def test_the_report_flags_pairs_computed_by_different_code(store, tmp_path):
    """docs/concepts/mlflow.md ("Provenance"): a pair whose baseline ran another commit or library version is named in the report
    (``provenance.csv``, a section of ``report.md``, ``report/pairs_provenance_mismatch``); matching pairs are not."""
    client = MlflowClient(store)
    exp = tracking.ensure_experiment(client, "provenance")
    code = {"git_sha": "abc123", "version/torch": "2.5.1"}
    bases = [_log(client, exp, f"b{s}", {**_base_tags(s), **code}, {"test/acc": 0.8}) for s in range(3)]
    old_torch = {**code, "version/torch": "2.4.0"}
    for s in range(3):
        tags = {**_transfer_tags(s, "A", ""), "baseline_run_id": bases[s], **(old_torch if s == 2 else code)}
        _log(client, exp, f"t{s}", tags, {"test/acc": 0.85, "baseline/test/acc": 0.8})
    report = build_report(load_runs("provenance", client=client), tmp_path, client, n_boot=200)
    flags = pd.read_csv(tmp_path / "provenance.csv")
    assert flags["run"].tolist() == ["t2"] and flags["baseline"].tolist() == ["b2"]
    assert flags.loc[0, "differences"] == "version/torch: 2.4.0 (transfer) vs 2.5.1 (baseline)"
    assert report.headline["report/pairs_provenance_mismatch"] == 1.0
    assert "## Pairs computed by different code" in report.markdown and "t2" in report.markdown


def test_a_report_that_fails_ends_the_sweeps_parent_failed_not_running(store, tmp_path, monkeypatch):
    """Nothing is left RUNNING: when finalising a sweep fails (here its stored state names a metric the schema does
    not know), the parent run ends FAILED with the traceback and a failure reason, and the error is logged."""
    from benchmark import sweep

    state = sweep.start(store, "broken", None, tmp_path / "sweep", [], "sha", "test/acc", 0.05, 0.01)
    monkeypatch.delenv(sweep.STATE_ENV)
    data = json.loads(state.path.read_text())
    state.path.write_text(json.dumps({**data, "metric": "test/no_such_metric"}))
    sweep.finalize_active()
    parent = MlflowClient(store).get_run(state.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"]
    assert "traceback.txt" in {a.path for a in MlflowClient(store).list_artifacts(state.parent_run_id)}


def test_figure_names_of_long_variants_stay_short_and_unique():
    """A variant of many settings or a long path must not make a file name the file system refuses (255 bytes)."""
    from benchmark.report.figures import variant_slug

    long_a = "target.root=/" + "x" * 300 + ", budget.epochs=1"
    long_b = "target.root=/" + "x" * 300 + ", budget.epochs=2"
    assert len(f"heatmap_linear_probe{variant_slug(long_a)}.png") < 150
    assert variant_slug(long_a) != variant_slug(long_b)
    assert variant_slug("frozen_stages=1") == "__frozen_stages=1" and variant_slug("") == ""


def test_reports_import_no_torch_timm_or_lightning():
    """Reports read MLflow and nothing else, so they must run where the harness's training stack is absent (a laptop
    with a copied store) and start fast: importing the package and its command line loads no torch, timm or
    Lightning. A fresh interpreter, because this test session has imported all three already."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys, benchmark.report, benchmark.report.cli\n"
        "print(benchmark.report.__file__)\n"
        "print(','.join(m for m in ('torch', 'timm', 'pytorch_lightning') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    where, heavy = done.stdout.splitlines()
    assert Path(where).is_relative_to(ROOT / "benchmark" / "report"), where  # this checkout's package, not another
    assert heavy == "", f"importing benchmark.report loads {heavy}"
