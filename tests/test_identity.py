"""Run identity and provenance: cell keys and variants, keys that know file weights by content and trainer numerics,
library versions and the code's commit on every run, ``rerun=``, and scores on the labelled examples runs get.

Real Hydra composition, a real SQLite store, real Lightning training on ``test_resnet`` and real checkpoint files.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import CONF, ROOT, compose, run_entry
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from benchmark import provenance, tracking, transferability
from benchmark.compare import log_scores
from benchmark.compose import build_job
from benchmark.data import label_subset
from benchmark.features import extract
from benchmark.job import execute
from benchmark.lifecycle import resumable_run
from benchmark.models import build_model, load_verified, read_state_dict
from benchmark.module import Optimization, TransferModule
from benchmark.preflight import preflight
from benchmark.spec import RERUN, Context
from benchmark.splits import load_splits

TINY = ["budget.epochs=1", "budget.min_steps=2", "budget.batch_size=16", "scores=false"]
LOCAL = ["source=local_file", "source.arch=test_resnet", "source.preprocessing.image_size=32"]
"""A file source names its architecture; 32 px (not test_resnet's 160) keeps the trainings here short."""
SHOWN = "source.preprocessing.image_size=32, source.arch=test_resnet"  # what LOCAL changes against the defaults


def _job(overrides: list[str]):
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return build_job(cfg, dict(cfg.hydra.runtime.choices))


def _checkpoint(path: Path, seed: int, num_classes: int = 10) -> Path:
    """A real ``test_resnet`` state dict (with a ``num_classes`` head) written as safetensors."""
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=num_classes)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Keys and variants (composition only)


def test_cells_are_told_apart_by_every_setting_and_share_a_key_across_seeds():
    jobs = {(f, s): _job(["strategy=partial_finetune", f"strategy.frozen_stages={f}", f"seed={s}"])
            for f in (1, 3) for s in (0, 1)}  # fmt: skip
    assert len({j.run_key for j in jobs.values()}) == 4
    for f in (1, 3):  # the seeds of one cell share its key, the run keys differ by seed only
        assert jobs[f, 0].cell_key == jobs[f, 1].cell_key
        assert jobs[f, 0].variant == jobs[f, 1].variant == f"frozen_stages={f}"
    assert jobs[1, 0].cell_key != jobs[3, 0].cell_key
    # the baseline ignores the strategy's settings: one baseline cell, shared by both variants
    assert jobs[1, 0].baseline.cell_key == jobs[3, 1].baseline.cell_key and jobs[1, 0].baseline.variant == ""
    assert jobs[1, 0].baseline_key != jobs[1, 1].baseline_key
    tags = jobs[1, 0].tags(Context(None, "0", Path(".")))
    assert tags["cell_key"] == jobs[1, 0].cell_key and tags["variant"] == "frozen_stages=1"

    default = _job([])
    assert default.variant == "" and default.baseline.variant == ""
    for overrides, shown in [
        (["strategy.backbone_lr_scale=0.1"], "backbone_lr_scale=0.1"),
        (["budget.epochs=4"], "budget.epochs=4"),
        (["selection=best_val"], "selection=best_val"),
        (["source.preprocessing.image_size=48"], "source.preprocessing.image_size=48"),
        (["trainer.deterministic=true"], "trainer.deterministic=true"),
        (["strategy.backbone_lr_scale=0.1", "budget.epochs=4"], "backbone_lr_scale=0.1, budget.epochs=4"),
    ]:
        job = _job(overrides)
        assert job.variant == shown, overrides
        assert job.cell_key != default.cell_key, overrides
    # settings that are the defaults are no variant; the seed and label budget are not one either
    assert _job(["strategy.frozen_stages=2", "strategy=partial_finetune"]).variant == ""
    assert _job(["budget.epochs=8", "seed=3", "label_budget=5"]).variant == ""


def test_a_value_typed_as_an_int_or_a_float_is_one_key():
    """An override keeps the type it was typed in: ``strategy.backbone_lr_scale=1`` (an int) against the YAML's
    ``1.0`` gave a second run key and a second cell, with an empty variant, for bit-identical runs. A value equal to
    its default is the default's key, and the same value typed either way is one key."""
    default = _job([])
    for overrides in (["strategy.backbone_lr_scale=1"], ["strategy.backbone_lr_scale=1.0"], ["budget.epochs=8.0"],
                      ["budget.epochs=8", "strategy.backbone_lr_scale=1"]):  # fmt: skip
        job = _job(overrides)
        assert (job.run_key, job.cell_key, job.variant) == (default.run_key, default.cell_key, ""), overrides
        assert job.baseline_key == default.baseline_key, overrides
    assert default.budget.epochs == 8, "the budget.epochs overrides above must equal the default"
    two, two_float = _job(["strategy.backbone_lr_scale=2"]), _job(["strategy.backbone_lr_scale=2.0"])
    assert two.run_key == two_float.run_key != default.run_key and two.variant == two_float.variant
    assert _job(["strategy.backbone_lr_scale=0.5"]).run_key not in (default.run_key, two.run_key)


def test_file_weights_are_keyed_by_content_not_path(tmp_path):
    a = _checkpoint(tmp_path / "a.safetensors", 0)
    b = _checkpoint(tmp_path / "b.safetensors", 1)
    (tmp_path / "copy").mkdir()
    a_copy = tmp_path / "copy" / "a.safetensors"
    shutil.copy(a, a_copy)

    def job(path: Path):
        return _job([*LOCAL, f"source.weights.path={path}", "strategy=finetune"])

    ja, jb, jcopy = job(a), job(b), job(a_copy)
    assert ja.run_key != jb.run_key and ja.cell_key != jb.cell_key  # two checkpoints: two cells, not one
    assert ja.run_key == jcopy.run_key and ja.cell_key == jcopy.cell_key  # same content elsewhere: same run
    digest = lambda p: __import__("hashlib").sha256(p.read_bytes()).hexdigest()[:8]  # noqa: E731
    assert ja.variant == f"weights=a.safetensors@{digest(a)}, {SHOWN}"
    assert jb.variant == f"weights=b.safetensors@{digest(b)}, {SHOWN}" and digest(a) != digest(b)
    assert ja.baseline_key == jb.baseline_key  # weights never enter the baseline key

    # the same path with new content (a re-exported checkpoint, written later) is a new run
    before = os.stat(a).st_mtime_ns
    _checkpoint(a, 2)
    os.utime(a, ns=(before + 10**9, before + 10**9))
    again = job(a)
    assert again.run_key != ja.run_key and again.variant == f"weights=a.safetensors@{digest(a)}, {SHOWN}"
    assert again.baseline_key == ja.baseline_key


def test_trainer_numerics_enter_every_key_and_speed_settings_do_not():
    base = _job([])
    for override in ["trainer.deterministic=true", "+trainer.channels_last=true", "+trainer.compile=true",
                     "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "trainer=gpu",
                     "trainer.fused_optimizer=false"]:  # fmt: skip
        job = _job([override])
        assert job.run_key != base.run_key, override
        assert job.baseline_key != base.baseline_key, override  # a pair's two runs share their numerics
        assert job.cell_key != base.cell_key, override
    for override in ["trainer.threads=1", "trainer.num_workers=2", "trainer.checkpoint_every_s=5.0",
                     "trainer.feature_cache=false", "+trainer.channels_last=false"]:  # fmt: skip
        job = _job([override])
        assert (job.run_key, job.baseline_key, job.cell_key) == (base.run_key, base.baseline_key, base.cell_key)


LEGACY_KEYS = {
    ("experiment=quickstart", "source=synth_digits", "strategy=finetune", "label_budget=5", "seed=0"):
        ("1b306e9b7704", "553ac09f3576", "9c0d8c25eed7"),
    ("strategy=linear_probe", "strategy.probe.head=sgd", "label_budget=null", "seed=2"):
        ("bcbbd200ca3f", "1f42d3e0a692", "bd8f951f5729"),
}  # fmt: skip
"""Run, baseline and cell keys of two jobs as the harness gave them before ``trainer.fused_optimizer`` existed
(commit 81a704c), when AdamW ran PyTorch's per-tensor loop (and every probe was a head trained by gradient descent:
``strategy.probe.head=sgd``, left out of the key at that value)."""


def test_a_solved_probe_is_a_new_key_and_the_gradient_descent_head_keeps_the_old_ones():
    sgd = _job(["strategy=linear_probe", "strategy.probe.head=sgd"])
    solved = _job(["strategy=linear_probe"])
    assert solved.run_key != sgd.run_key and solved.baseline_key == sgd.baseline_key
    assert sgd.variant == "probe.head=sgd" and solved.variant == ""
    assert "probe" not in _job(["strategy=finetune"]).variant


@pytest.mark.parametrize("overrides", sorted(LEGACY_KEYS))
def test_runs_recorded_before_the_fused_optimizer_keep_their_keys_with_it_off(overrides):
    """``trainer.fused_optimizer=false`` trains as runs did before the setting and finds them by their keys; the
    default (the fused kernel, other rounding) is another run. Each job's module builds the optimizer it says."""
    legacy = _job([*overrides, "trainer.fused_optimizer=false"])
    assert (legacy.run_key, legacy.baseline_key, legacy.cell_key) == LEGACY_KEYS[overrides]
    fused = _job(list(overrides))
    assert fused.trainer.fused_optimizer and fused.run_key not in LEGACY_KEYS[overrides]
    assert legacy.variant.endswith("trainer.fused_optimizer=false") and "fused" not in fused.variant
    for job, expected in ((legacy, False), (fused, True)):
        model = build_model("test_resnet", 10, job.source.preprocessing)
        module = TransferModule(model, job.strategy, 10, Optimization(), 1, 1, job.trainer.fused_optimizer)
        assert bool(module.configure_optimizers().defaults["fused"]) is expected


def test_a_source_is_pretrained_the_same_whatever_the_jobs_optimizer_kernel(tmp_path, store):
    """A harness-pretrained source is cached and found by its recipe alone (``identity.pretrain_key``), so its
    pretraining must not depend on the job's trainer: with ``trainer.fused_optimizer`` on or off, the same bytes."""
    from benchmark.recipe import source_weights_file

    tiny = ["source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40"]
    client = tracking.open_store(store)
    files = []
    for fused in ("true", "false"):
        ctx = Context(client, tracking.ensure_experiment(client, f"pretrain_{fused}"), tmp_path / f"cache_{fused}")
        files.append(source_weights_file(_job([*tiny, f"trainer.fused_optimizer={fused}"]), ctx))
    assert files[0].read_bytes() == files[1].read_bytes()


# ----------------------------------------------------------------------------------------------------------------
# Provenance


def test_provenance_mismatch_names_what_differs():
    tags = {"git_sha": "abc", **provenance.versions()}
    assert provenance.provenance_mismatch(tags, dict(tags)) == []
    other = {**tags, "version/torch": "0.0.1", "git_sha": "def"}
    out = provenance.provenance_mismatch(tags, other)
    assert out == [
        "git_sha: abc (transfer) vs def (baseline)",
        f"version/torch: {tags['version/torch']} (transfer) vs 0.0.1 (baseline)",
    ]
    # recorded on one run only counts; on neither (runs older than these tags) cannot be compared
    older = {k: v for k, v in tags.items() if k != "version/numpy"}
    assert provenance.provenance_mismatch(older, tags) == [
        f"version/numpy: unrecorded (transfer) vs {tags['version/numpy']} (baseline)"
    ]
    assert provenance.provenance_mismatch({}, {"version/numpy": math.nan}) == []  # a report frame's missing tag
    assert set(provenance.versions()) == {"version/python"} | {f"version/{n}" for n in provenance.LIBRARIES}
    assert provenance.versions()["version/torch"] == torch.__version__
    import hydra
    import scipy

    assert provenance.versions()["version/hydra"] == hydra.__version__  # composition decides which runs exist
    assert provenance.versions()["version/scipy"] == scipy.__version__  # the statistics of every verdict
    assert provenance.versions()["version/optuna"] != ""  # trial draws ("absent" where not installed)


# ----------------------------------------------------------------------------------------------------------------
# rerun=


def test_rerun_is_validated_at_preflight():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for value in RERUN:  # the spellings the README documents parse as themselves
            cfg = hydra_compose(config_name="config", overrides=[f"rerun={value}"], return_hydra_config=True)
            assert cfg.rerun == value
        cfg = hydra_compose(config_name="config", overrides=["rerun=sometimes"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        problems = preflight(cfg)
    assert len(problems) == 1, problems
    assert "rerun='sometimes'" in problems[0] and "none, failed, all" in problems[0]


def _ctx(store: str, tmp_path: Path, sweep_id: str | None, rerun: str = "none") -> Context:
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "identity"), tmp_path / "cache", None, sweep_id,
                   rerun=rerun)  # fmt: skip


def test_rerun_all_trains_every_run_again_once_per_sweep_and_keeps_the_old_ones(tmp_path, store):
    weights = _checkpoint(tmp_path / "w.safetensors", 0)
    common = [*LOCAL, f"source.weights.path={weights}", "label_budget=2", *TINY]
    finetune = _job([*common, "strategy=finetune"])
    partial = _job([*common, "strategy=partial_finetune"])
    assert finetune.baseline_key == partial.baseline_key

    first = execute(finetune, _ctx(store, tmp_path, "s1"))
    assert not first.reused and not first.baseline_reused
    again = execute(finetune, _ctx(store, tmp_path, "s2"))  # rerun=none: reused, even from another sweep
    assert again.reused and again.run_id == first.run_id and again.baseline_run_id == first.baseline_run_id

    ctx = _ctx(store, tmp_path, "s3", rerun="all")
    fresh = execute(finetune, ctx)
    assert not fresh.reused and not fresh.baseline_reused
    assert fresh.run_id != first.run_id and fresh.baseline_run_id != first.baseline_run_id
    # within the sweep a shared baseline trains again once, not once per job, and a repeated job is reused
    other = execute(partial, ctx)
    assert not other.reused and other.baseline_reused and other.baseline_run_id == fresh.baseline_run_id
    assert execute(finetune, ctx).run_id == fresh.run_id

    client = ctx.client
    for key, old, new in [(finetune.run_key, first.run_id, fresh.run_id),
                          (finetune.baseline_key, first.baseline_run_id, fresh.baseline_run_id)]:  # fmt: skip
        runs = tracking.find_runs(client, ctx.experiment_id, "run_key", key)
        assert {r.info.run_id for r in runs} == {old, new}  # the old run is kept, FINISHED
        assert runs[0].info.run_id == new  # the newest FINISHED run is the one reused from now on
    later = execute(finetune, _ctx(store, tmp_path, "s4"))
    assert later.reused and later.run_id == fresh.run_id and later.baseline_run_id == fresh.baseline_run_id
    run = client.get_run(fresh.run_id)
    assert run.data.tags["baseline_run_id"] == fresh.baseline_run_id and "provenance_mismatch" not in run.data.tags
    for run_id in (fresh.run_id, fresh.baseline_run_id):  # the code that computed each run
        tags = client.get_run(run_id).data.tags
        assert {k: tags.get(k) for k in provenance.PROVENANCE_TAGS} == provenance.tags()
        assert tags["cell_key"] and "variant" in tags
    # a baseline recorded by another torch (a store shared across machines): its transfer run says so on reuse
    client.set_tag(fresh.baseline_run_id, "version/torch", "0.0.0")
    execute(finetune, _ctx(store, tmp_path, "s5"))
    flagged = client.get_run(fresh.run_id).data.tags.get("provenance_mismatch")
    assert flagged == f"version/torch: {torch.__version__} (transfer) vs 0.0.0 (baseline)"
    client.set_tag(fresh.baseline_run_id, "version/torch", torch.__version__)
    execute(finetune, _ctx(store, tmp_path, "s6"))
    assert "provenance_mismatch" not in client.get_run(fresh.run_id).data.tags


def test_rerun_failed_starts_afresh_instead_of_resuming(tmp_path, store):
    job = _job(["strategy=scratch", "label_budget=2", *TINY])
    ctx = _ctx(store, tmp_path, None)
    run_id = tracking.create_run(ctx.client, ctx.experiment_id, job.name, job.tags(ctx))
    tracking.record_failure(ctx.client, run_id, RuntimeError("interrupted"))
    ckpt = ctx.cache_dir / "checkpoints" / f"{job.run_key}.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"checkpoint")
    ckpt.with_suffix(".json").write_text(f'{{"run_id": "{run_id}"}}')
    assert resumable_run(job, ctx) == run_id  # rerun=none resumes the interrupted run
    for rerun in ("failed", "all"):
        assert resumable_run(job, _ctx(store, tmp_path, None, rerun)) is None


# ----------------------------------------------------------------------------------------------------------------
# Transferability scores on the labelled subset


def test_transferability_scores_use_the_runs_labelled_examples(tmp_path, store):
    weights = _checkpoint(tmp_path / "w.safetensors", 0)
    ctx = _ctx(store, tmp_path, None)

    def scores(budget: str, seed: int) -> tuple[dict[str, float], object]:
        job = _job([*LOCAL, f"source.weights.path={weights}", "strategy=finetune",
                    f"label_budget={budget}", f"seed={seed}"])  # fmt: skip
        run_id = tracking.create_run(ctx.client, ctx.experiment_id, job.name, job.tags(ctx))
        out = log_scores(job, ctx, run_id)
        assert ctx.client.get_run(run_id).data.metrics["transfer/logme"] == out["transfer/logme"]
        return out, job

    five, job = scores("5", 0)
    splits = load_splits(job.target_id, job.target, job.target_config)
    model = build_model("test_resnet", 10, job.source.preprocessing)
    load_verified(model, read_state_dict(weights), "test")

    def expected(budget: int | None, seed: int) -> tuple[float, float]:
        subset = label_subset(splits.train.labels, budget, seed, job.target_id)
        feats, _ = extract(model, job.source.preprocessing.apply(splits.train.subset(subset)))
        f, y = feats.numpy().astype(np.float64), splits.train.labels[subset]
        return transferability.logme(f, y), transferability.h_score(f, y)

    assert (five["transfer/logme"], five["transfer/h_score"]) == pytest.approx(expected(5, 0), rel=1e-4)
    other_seed, _ = scores("5", 1)
    assert other_seed["transfer/logme"] != five["transfer/logme"]  # another seed, other labelled examples
    assert (other_seed["transfer/logme"], other_seed["transfer/h_score"]) == pytest.approx(expected(5, 1), rel=1e-4)
    every, _ = scores("null", 0)
    assert (every["transfer/logme"], every["transfer/h_score"]) == pytest.approx(expected(None, 0), rel=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# End to end: the sweep of the issue, then rerun=all


def _sweep(tmp_path: Path, store: str, args: list[str], name: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "benchmark.run", "-m", *args,
        "source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=1",
        "budget.min_steps=4", "budget.batch_size=32", "trainer.threads=1",
        f"tracking.uri={store}", "tracking.experiment=cells", f"tracking.artifact_root={tmp_path / 'artifacts'}",
        f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / name}",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    # from another directory: the recorded commit is the harness's, not the working directory's
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    result = run_entry(cmd, cwd=elsewhere, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_sweep_over_a_strategy_setting_gives_one_cell_per_value_with_provenance(tmp_path, store):
    args = ["source=synth_digits", "target=digits", "strategy=partial_finetune", "strategy.frozen_stages=1,3",
            "label_budget=5", "seed=0,1"]  # fmt: skip
    _sweep(tmp_path, store, args, "first")
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("cells")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    by_role: dict[str, list] = {}
    for run in runs:
        by_role.setdefault(run.data.tags["role"], []).append(run)
    transfer, baselines = by_role["transfer"], by_role["baseline"]
    assert len(transfer) == 4 and len(baselines) == 2 and len(by_role["pretrain"]) == 1

    cells: dict[str, list] = {}
    for run in transfer:
        cells.setdefault(run.data.tags["cell_key"], []).append(run)
    assert len(cells) == 2  # two experiments, never one cell with repeated seeds
    variants = set()
    for members in cells.values():
        assert sorted(r.data.tags["seed"] for r in members) == ["0", "1"]
        assert len({r.data.tags["variant"] for r in members}) == 1
        variants.add(members[0].data.tags["variant"])
    split = [set(v.split(", ")) for v in variants]
    assert {p for s in split for p in s if p.startswith("frozen_stages")} == {"frozen_stages=1", "frozen_stages=3"}
    assert split[0] - {"frozen_stages=1", "frozen_stages=3"} == split[1] - {"frozen_stages=1", "frozen_stages=3"}
    assert len({r.data.tags["cell_key"] for r in baselines}) == 1  # the baselines are one cell: scratch, two seeds
    assert "frozen_stages" not in baselines[0].data.tags["variant"]

    code = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    for run in transfer + baselines + by_role["pretrain"] + by_role["sweep"]:
        tags = run.data.tags
        assert tags["git_sha"].split("-dirty")[0] == code.stdout.strip(), run.info.run_name
        assert {k: tags.get(k) for k in provenance.versions()} == provenance.versions(), run.info.run_name
    assert not [r for r in transfer if "provenance_mismatch" in r.data.tags]

    # rerun=all: the chosen jobs and their baselines train again as new runs; the old runs stay; the source's
    # pretrained checkpoint is a content-addressed cache, not a run of the sweep, and is reused
    one = next(r for r in transfer if r.data.tags["seed"] == "0" and "frozen_stages=1" in r.data.tags["variant"])
    _sweep(tmp_path, store, [*args[:3], "strategy.frozen_stages=1", "label_budget=5", "seed=0", "rerun=all"], "again")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    same = [r for r in runs if r.data.tags.get("run_key") == one.data.tags["run_key"]]
    assert len(same) == 2 and {r.info.status for r in same} == {"FINISHED"}
    newest = max(same, key=lambda r: r.info.start_time)
    assert newest.info.run_id != one.info.run_id
    old_base = one.data.tags["baseline_run_id"]
    assert newest.data.tags["baseline_run_id"] != old_base and client.get_run(old_base).info.status == "FINISHED"
    assert len([r for r in runs if r.data.tags.get("role") == "pretrain"]) == 1
