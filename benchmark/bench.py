"""Performance measured side by side: ``python -m benchmark.bench [--reps 3] [--skip-quickstart]``.

Every figure is a ratio against a reference measured in the same invocation, on the same machine, median of
``--reps`` repetitions (sweeps: once each). Nothing here is a test; nothing asserts a time.

1. harness overhead: one cell (fine-tune, all labels, >= 30 s) through ``python -m benchmark.run`` against a plain
   PyTorch loop doing the same training (same model, weights, data, batches, optimiser groups, schedule, threads,
   validation and test), both as whole processes; with where the difference goes.
2. frozen features: a linear probe trained on cached features against re-running the frozen backbone each epoch,
   per epoch and per run, with both test accuracies.
3. sweep throughput: a small grid sequentially (2 threads) against 2 parallel workers with 1 thread each.
4. compute share: the share of a cell's wall time spent inside the model's forward and backward passes, from the
   PyTorch profiler (``record_function`` ranges around the model's forward and every ``Tensor.backward``).
5. quickstart: cold (empty store and cache, pretraining included) and warm (everything reused) wall time, with the
   first ``--quickstart-seeds`` seeds (3; the preset has 5).
6. image folder loading: images/s of decoding and resizing an ImageFolder of 2,000 JPEGs (256 px, written here) to
   a hub source's input size through the training DataLoader, against images/s of training steps at that size.

One module for the one command (about 500 lines): each numbered section measures one figure against its own
reference, and they share the timing and store helpers at the top.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL = ["source=synth_digits", "target=digits", "strategy=finetune", "label_budget=null", "seed=0",
        "budget.epochs=40"]  # fmt: skip
PHASES = ("compose", "store", "lookup", "run", "setup", "fit", "test", "log", "compare", "scores", "other")
"""A job's phases (``benchmark.phases``), in the order a job goes through them."""
GRID = ["source=synth_digits,shapes", "strategy=finetune", "label_budget=10", "seed=0,1"]


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _timed(cmd: list[str], cwd: Path = ROOT) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return wall, out.stdout


def _harness(args: list[str], work: Path, multirun: bool = False) -> list[str]:
    return [sys.executable, "-m", "benchmark.run", *(["-m"] if multirun else []), *args,
            f"tracking.uri=sqlite:///{work / 'mlflow.db'}", "tracking.experiment=bench",
            f"tracking.artifact_root={work / 'artifacts'}", f"cache_dir={work / 'cache'}",
            f"hydra.sweep.dir={work / 'sweep'}", f"hydra.run.dir={work / 'run'}"]  # fmt: skip


def _fresh(base: Path, name: str, store: Path, cache: Path | None) -> Path:
    """A work dir with a migrated store copy (and a warm source cache when given)."""
    work = base / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(store, work / "mlflow.db")
    if cache is not None:
        shutil.copytree(cache, work / "cache")
    return work


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


# ---------------------------------------------------------------------------------------------------------------
# 1. the plain PyTorch loop (a whole process, run as `python -m benchmark.bench plain ...`)


PLAIN_MODULES = ("torch", "timm", "safetensors.torch", "benchmark.data", "benchmark.targets.digits")
"""What the plain loop imports (``plain``), and nothing else: ``overhead`` times importing them against importing
what a harness job needs; the difference, the libraries the harness adds (Lightning, torchmetrics, MLflow, Hydra), is
most of the single cell's fixed cost."""


def plain(checkpoint: str, epochs: int, threads: int) -> dict[str, float]:
    """Fine-tune test_resnet from ``checkpoint`` on all digits labels exactly as the harness's default budget does,
    with nothing but torch, timm and the data helpers."""
    t_start = time.perf_counter()
    # imported here, not at the top: this process is the plain reference and pays only for what it uses
    import importlib

    for name in PLAIN_MODULES:
        importlib.import_module(name)
    # imported just above (PLAIN_MODULES), here only bound to names: this process pays for nothing else
    import timm
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from benchmark.data import EpochShuffle, Preprocessing, seed_hash
    from benchmark.targets.digits import Digits

    torch.set_num_threads(threads)
    splits = Digits().load()
    prep = Preprocessing(32)
    xs = {k: prep.tensor(getattr(splits, k).images) for k in ("train", "val", "test")}
    ys = {k: torch.from_numpy(getattr(splits, k).labels) for k in ("train", "val", "test")}
    torch.manual_seed(seed_hash("model_init", 0, "") % 2**32)
    model = timm.create_model("test_resnet", num_classes=10)
    state = {k: v for k, v in load_file(checkpoint).items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=False)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            fused=True)  # as the harness's trainer (trainer.fused_optimizer)  # fmt: skip
    bs, lr = 64, 3.0e-3
    steps_per_epoch = math.ceil(len(ys["train"]) / bs)
    total = epochs * steps_per_epoch
    warmup = max(1, int(0.05 * total))
    sampler = EpochShuffle(len(ys["train"]), 0)
    val_every = max(d for d in range(1, max(1, epochs // 12) + 1) if epochs % d == 0)

    def evaluate(split: str) -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xs[split][i : i + 512]).argmax(1) for i in range(0, len(ys[split]), 512)])
        return float((pred == ys[split]).float().mean())

    step = 0
    t_fit = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)))
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            factor = (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            )
            for g in opt.param_groups:
                g["lr"] = lr * factor
            loss = F.cross_entropy(model(xs["train"][idx]), ys["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if (epoch + 1) % val_every == 0:
            evaluate("val")
    fit_s = time.perf_counter() - t_fit
    acc = evaluate("test")
    return {"test_acc": acc, "fit_s": fit_s, "total_s": time.perf_counter() - t_start}


# ---------------------------------------------------------------------------------------------------------------


def overhead(base: Path, store: Path, cache: Path, reps: int) -> dict:
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    from mlflow.tracking import MlflowClient

    from benchmark.compose import compose_job
    from benchmark.identity import pretrain_key

    job = compose_job(CELL)
    key = pretrain_key(job.source)
    ckpt = next((cache / "sources").glob(f"*{key}.safetensors"))
    epochs, _ = job.budget.plan(1297)
    # the cell's scratch baseline, trained once outside the timing: each timed harness run trains only the cell
    with_base = _fresh(base, "overhead_base", store, cache)
    _timed(_harness([*CELL[:2], "strategy=scratch", *CELL[3:]], with_base))
    store = with_base / "mlflow.db"
    harness, plain_runs, metrics = [], [], []
    for r in range(reps):
        work = _fresh(base, f"overhead{r}", store, cache)
        wall, _ = _timed(_harness(CELL, work))
        harness.append(wall)
        client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
        run = next(x for x in client.search_runs([client.get_experiment_by_name("bench").experiment_id])
                   if x.data.tags.get("role") == "transfer")  # fmt: skip
        metrics.append(run.data.metrics)
        wall, out = _timed([sys.executable, "-m", "benchmark.bench", "plain", str(ckpt), str(epochs), "2"])
        plain_runs.append((wall, json.loads(out.strip().splitlines()[-1])))
    imports = [_timed([sys.executable, "-c", "import benchmark.job"])[0] for _ in range(reps)]
    plain_imports = [_timed([sys.executable, "-c", f"import {', '.join(PLAIN_MODULES)}"])[0] for _ in range(reps)]
    med = lambda k: _median([m.get(k, math.nan) for m in metrics])  # noqa: E731
    return {
        "harness_s": _median(harness),
        "plain_s": _median([w for w, _ in plain_runs]),
        "ratio": _median(harness) / _median([w for w, _ in plain_runs]),
        "harness_test_acc": med("test/acc"),
        "plain_test_acc": _median([p["test_acc"] for _, p in plain_runs]),
        "breakdown": {
            "imports of a job (python -c 'import benchmark.job')": _median(imports),
            "  of which the plain loop's own imports (bench.PLAIN_MODULES)": _median(plain_imports),
            "  of which beyond them (Lightning, torchmetrics, MLflow, Hydra...)": _median(imports)
            - _median(plain_imports),
            "outside the job (imports, Hydra start-up and composition, exit)": _median(harness) - med("time/job_s"),
            "the job (time/job_s), of which:": med("time/job_s"),
            **{f"  {name}": med(f"time/job_{name}_s") for name in PHASES},
            "harness fit (Lightning loop, validation, per-epoch MLflow logging)": med("time/fit_s"),
            "  of which MLflow per-epoch logging": med("time/epoch_logging_s"),
            "plain loop fit": _median([p["fit_s"] for _, p in plain_runs]),
        },
    }


def frozen_features(base: Path, store: Path, cache: Path, reps: int) -> dict:
    """Linear probe (all labels): cached features vs the frozen backbone run every epoch, in process."""
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    import torch

    import benchmark.features as features
    from benchmark import tracking
    from benchmark.compose import compose_job
    from benchmark.job import ensure_run
    from benchmark.spec import Context

    torch.set_num_threads(2)
    out: dict[str, list[float]] = {}
    for r in range(reps):
        for cached in (True, False):
            work = _fresh(base, f"probe{r}{cached}", store, cache)
            job = compose_job(["strategy=linear_probe", "label_budget=null", f"trainer.feature_cache={cached}"])
            client = tracking.open_store(f"sqlite:///{work / 'mlflow.db'}")
            ctx = Context(client, tracking.ensure_experiment(client, "bench"), work / "cache")
            features._MEMO.clear()  # cold: extraction counted in the cached run
            outcome = ensure_run(job, ctx)  # the run alone: its scratch baseline is not needed for the comparison
            met = outcome.metrics
            tag = "cached" if cached else "backbone"
            out.setdefault(f"{tag}_fit_s", []).append(met["time/fit_s"])
            elapsed = sorted((m.step, m.value) for m in client.get_metric_history(outcome.run_id, "time/elapsed_s"))
            per_epoch = (elapsed[-1][1] - elapsed[0][1]) / max(1, len(elapsed) - 1)
            out.setdefault(f"{tag}_epoch_s", []).append(per_epoch)
            out.setdefault(f"{tag}_run_s", []).append(met["time/fit_s"] + met.get("time/feature_extract_s", 0.0))
            out.setdefault(f"{tag}_acc", []).append(met["test/acc"])
            out.setdefault(f"{tag}_epochs", []).append(met["train/epochs"])
    res = {k: _median(v) for k, v in out.items()}
    res["speedup_per_epoch"] = res["backbone_epoch_s"] / res["cached_epoch_s"]
    res["speedup_per_run"] = res["backbone_run_s"] / res["cached_run_s"]
    return res


def throughput(base: Path, store: Path, cache: Path) -> dict:
    seq = _fresh(base, "seq", store, cache)
    par = _fresh(base, "par", store, cache)
    t_seq, _ = _timed(_harness([*GRID, "trainer.threads=2"], seq, multirun=True))
    t_par, _ = _timed(_harness([*GRID, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], par, multirun=True))
    return {"jobs": 4, "sequential_s": t_seq, "parallel_s": t_par, "speedup": t_seq / t_par}


def compute_share(base: Path, store: Path, cache: Path) -> dict:
    """Share of wall time inside model forward/backward (PyTorch profiler ranges), per quickstart strategy.

    Forward: hooks on the model; backward: every ``Tensor.backward`` call (the training loss's, in Lightning's loop
    and in the in-memory head loop alike). Wall time is the whole run: data, set-up, feature extraction, MLflow.
    """
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    import benchmark.recipe as job_mod
    from benchmark import tracking
    from benchmark.compose import compose_job
    from benchmark.job import ensure_run
    from benchmark.spec import Context

    torch.set_num_threads(2)
    original_fit, original_backward = job_mod.fit_and_test, torch.Tensor.backward

    def backward_in_range(self, *args, **kwargs):
        with record_function("model_backward"):
            return original_backward(self, *args, **kwargs)

    def fit_with_ranges(model, *args, **kwargs):
        def pre(module, inputs):
            module._range = record_function("model_forward")
            module._range.__enter__()

        def post(module, inputs, output):
            module._range.__exit__(None, None, None)

        h1, h2 = model.register_forward_pre_hook(pre), model.register_forward_hook(post)
        try:
            return original_fit(model, *args, **kwargs)
        finally:
            h1.remove()
            h2.remove()

    result = {}
    for strategy in ("finetune", "linear_probe"):
        work = _fresh(base, f"share_{strategy}", store, cache)
        job = compose_job([f"strategy={strategy}", "label_budget=10"])
        client = tracking.open_store(f"sqlite:///{work / 'mlflow.db'}")
        ctx = Context(client, tracking.ensure_experiment(client, "bench"), work / "cache")
        job_mod.fit_and_test, torch.Tensor.backward = fit_with_ranges, backward_in_range
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                ensure_run(job, ctx)  # the run alone: its scratch baseline is not part of the cell's compute
                wall = time.perf_counter() - t0
        finally:
            job_mod.fit_and_test, torch.Tensor.backward = original_fit, original_backward
        totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key.startswith("model_")}
        share = (totals.get("model_forward", 0.0) + totals.get("model_backward", 0.0)) / wall
        result[strategy] = {"wall_s": wall, **totals, "share": share}
    return result


def image_loading(base: Path, n: int = 2000, source: str = "test_resnet_in1k") -> dict:
    """Images/s of the file-backed data path (Pillow decode + resize to the source's size, workers as training uses
    them) against images/s of fine-tuning steps of the source's architecture at that size (random weights)."""
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    import numpy as np
    import torch
    from PIL import Image

    from benchmark.compose import compose_job
    from benchmark.loaders import make_loader, workers
    from benchmark.models import build_model
    from benchmark.targets.image_folder import ImageFolder

    root = base / "folder"
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 255, 256, dtype=np.float32)
        img = (ramp[None, :, None] * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 20, (256, 256, 3))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(root / f"c{i % 10}" / f"{i}.jpg", quality=90)
    job = compose_job([f"source={source}", "target=image_folder", f"target.root={root}"])
    prep, batch = job.source.preprocessing, job.budget.batch_size
    train = prep.apply(ImageFolder(root, test_fraction=0.01, val_fraction=0.01).load().train)
    loader = make_loader(train, batch, True, 0, job.trainer.num_workers)
    t0, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += len(x)
    load_s = time.perf_counter() - t0
    model = build_model(job.source.arch, 10, prep)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(batch, prep.in_chans, prep.image_size, prep.image_size), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    step_s = _median(times[1:])
    return {"images": seen, "size": prep.image_size, "arch": job.source.arch, "workers": workers(train, 0),
            "load_img_s": seen / load_s, "train_img_s": batch / step_s}  # fmt: skip


def quickstart(base: Path, seeds: int) -> dict:
    """The quickstart sweep with its first ``seeds`` seeds (the preset has 5), cold then warm."""
    work = base / "quickstart"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    args = ["experiment=quickstart", "seed=" + ",".join(str(s) for s in range(seeds))]
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    from benchmark.compose import config
    from benchmark.threads import parallel_launcher

    launcher = config(args[:1]).hydra.launcher  # the preset's: its jobs run side by side in this many workers
    workers = int(launcher.get("n_jobs") or 1) if parallel_launcher(launcher) else 1
    cold, _ = _timed(_harness(args, work, multirun=True))
    fit = _fit_seconds(work / "mlflow.db")
    cold_jobs = sum(r["phases"]["time/job_s"] for r in _records(work / "sweep"))
    shutil.rmtree(work / "sweep")
    warm, _ = _timed(_harness(args, work, multirun=True))
    warm_jobs = sum(r["phases"]["time/job_s"] for r in _records(work / "sweep"))
    return {"seeds": seeds, "cold_s": cold, "warm_s": warm, "cold_fit_s": fit, "cold_jobs_s": cold_jobs,
            "warm_jobs_s": warm_jobs, "workers": workers}  # fmt: skip


ADAPTIVE_GRIDS = {
    "quickstart": ["experiment=quickstart"],
    "data_efficiency": ["experiment=data_efficiency"],
}
"""Grids the adaptive-seed comparison runs (their own seed axis is replaced by seeds 0..max-1 or the design's)."""


def _fit_seconds(store: Path) -> float:
    """Sum of ``time/fit_s`` over the training runs in ``store``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("bench")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return sum(
        r.data.metrics.get("time/fit_s", 0.0) for r in runs if r.data.tags.get("role") in ("transfer", "baseline")
    )


def _records(sweep_dir: Path) -> list[dict]:
    """The job records a sweep wrote (``benchmark.sweep.write_record``), in job order."""
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob("transfer_bench_jobs/*.json"))]


def jobs_overhead(base: Path, store: Path, cache: Path, seeds: int) -> dict:
    """Per-job overhead of a sweep: the quickstart grid with ``seeds`` seeds on a warm source cache (pretraining
    is not part of it), then the same command again (every job reused). Each job's phases come from its record
    (``benchmark.phases``); the training share is the sum of ``time/fit_s`` of the runs it trained over the
    command's wall time, the rest of the command (start-up, preflight, the sweep's report) is what no job holds."""
    work = _fresh(base, "jobs", store, cache)
    # one job at a time with 2 threads, as measured before the quickstart ran two jobs at once: the per-job phases
    # and the training share of one process, not of a pool
    args = ["experiment=quickstart", "seed=" + ",".join(str(s) for s in range(seeds)), "trainer.threads=2",
            "hydra/launcher=basic"]  # fmt: skip
    cold, _ = _timed(_harness(args, work, multirun=True))
    fit = _fit_seconds(work / "mlflow.db")
    trained = _records(work / "sweep")
    shutil.rmtree(work / "sweep")
    warm, _ = _timed(_harness(args, work, multirun=True))
    reused = _records(work / "sweep")
    imports = _median([_timed([sys.executable, "-c", "import benchmark.job"])[0] for _ in range(3)])
    return {"jobs": len(trained), "cold_s": cold, "fit_s": fit, "trained": [r["phases"] for r in trained],
            "warm_s": warm, "reused": [r["phases"] for r in reused], "job_imports_s": imports}  # fmt: skip


def _phase_table(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per job of each phase, and of the job's harness time (its wall time minus its fit)."""
    names = sorted({k for r in rows for k in r}, key=lambda k: -sum(r.get(k, 0.0) for r in rows))
    out = {k.removeprefix("time/job_").removesuffix("_s"): sum(r.get(k, 0.0) for r in rows) / len(rows)
           for k in names if k != "time/job_s"}  # fmt: skip
    out["harness (job wall - fit)"] = sum(r["time/job_s"] - r.get("time/job_fit_s", 0.0) for r in rows) / len(rows)
    return out


def _cell_costs(store: Path) -> dict[str, float]:
    """Median ``time/fit_s`` per ``cell_key`` over the training runs in ``store``: the runs of one cell do the same work
    (model, data, epochs; only the seed differs), so the median prices a run without the load its machine had."""
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    from benchmark.report.load import load_runs

    runs = load_runs(tracking_uri=f"sqlite:///{store}", experiment="bench")
    return runs.groupby("tags.cell_key")["metrics.time/fit_s"].median().fillna(0.0).to_dict()


def _sweeps_cost(store: Path, only: str | None = None, last: bool = False) -> dict[str, dict]:
    """Per sweep in ``store`` (oldest first; ``only`` one sweep id, ``last`` the newest sweep): the runs it used
    (trained or reused, from its parent's ``runs.json``), their count and sum of ``time/fit_s``, and the verdict of
    each of its cells."""
    from mlflow.tracking import MlflowClient

    from benchmark.report.load import load_runs  # the runs a sweep used: the report's own reading of runs.json

    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("bench")
    parents = client.search_runs([exp.experiment_id], "tags.role = 'sweep'", order_by=["attributes.start_time ASC"])
    parents = [p for p in parents if only in (None, p.data.tags["sweep_id"])][-1:] if last or only else parents
    cost = _cell_costs(store)
    out = {}
    for parent in parents:
        sweep_id = parent.data.tags["sweep_id"]
        used = load_runs(client=client, experiment="bench", sweep_ids=[sweep_id])
        cells = client.search_runs([exp.experiment_id], f"tags.role = 'cell' and tags.sweep_id = '{sweep_id}'",
                                   max_results=5000)  # fmt: skip
        out[sweep_id] = {
            "runs": len(used),
            "fit_s": float(used["metrics.time/fit_s"].fillna(0.0).sum()) if len(used) else 0.0,
            "fit_s_median": float(sum(cost.get(k, 0.0) for k in used["tags.cell_key"])) if len(used) else 0.0,
            "cells": {" ".join(str(r.data.tags.get(k)) for k in ("source", "target", "strategy", "label_budget",
                                                                  "comparison")): r.data.tags.get("verdict", "?")
                      for r in cells},  # keys are strings: the report is written as JSON
        }  # fmt: skip
    return out


DESIGN_VARIANTS = {
    "O'Brien-Fleming, no futility stop": {"shape": 0.0, "futility": 0.0},
    "O'Brien-Fleming, futility 0.1": {"shape": 0.0, "futility": 0.1},
    "O'Brien-Fleming, futility 0.2": {"shape": 0.0, "futility": 0.2},
    "O'Brien-Fleming, futility 0.3": {"shape": 0.0, "futility": 0.3},
    "Wang-Tsiatis 0.25, futility 0.2": {"shape": 0.25, "futility": 0.2},
    "Pocock, futility 0.2": {"shape": 0.5, "futility": 0.2},
}
"""Designs replayed on the fixed design's runs (``replay_designs``) beside the one the adaptive sweep ran."""


def replay_designs(store: Path, sweep_id: str, design: dict, metric: str = "test/acc") -> dict[str, dict]:
    """What each design of ``DESIGN_VARIANTS`` would have cost on the fixed design's runs, without training: the
    rounds of the sweeper (``sequential.plan_next_round`` on each cell's deltas in seed order, one family) replayed
    on the stored deltas; a cell's seeds are those its verdict asked for, a baseline's the most any cell paired with
    it used. Its training seconds are the ``time/fit_s`` of exactly those runs. ``design``: the adaptive sweep's
    (looks, alpha, margin), of which each variant changes the boundary shape and the futility stop; ``metric`` its
    verdict metric."""
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    import dataclasses

    from benchmark import sequential
    from benchmark.report.load import load_runs

    runs = load_runs(tracking_uri=f"sqlite:///{store}", experiment="bench", sweep_ids=[sweep_id])
    runs["seed"] = runs["tags.seed"].astype(int)
    fit = runs.set_index("tags.run_key")["metrics.time/fit_s"].fillna(0.0).to_dict()
    cost = _cell_costs(store)
    median = {k: cost.get(c, 0.0) for k, c in zip(runs["tags.run_key"], runs["tags.cell_key"], strict=True)}
    cells: dict[str, list[tuple[float, str, str]]] = {}  # cell -> (delta, run key, its baseline's run key) by seed
    for _, r in runs[runs["tags.role"] == "transfer"].sort_values("seed").iterrows():
        cells.setdefault(r["tags.cell_key"], []).append(
            (r[f"metrics.delta/{metric}"], r["tags.run_key"], r["tags.baseline_key"])
        )
    out = {}
    for name, knobs in DESIGN_VARIANTS.items():
        plan_of = dataclasses.replace(sequential.SequentialDesign(**design), **knobs)
        want = dict.fromkeys(cells, plan_of.min_seeds)
        while True:  # the sweeper's rounds: each asks the open cells for their next look's seeds
            seen = {k: [d for d, _, _ in v[: want[k]]] for k, v in cells.items()}
            plan = sequential.plan_next_round(seen, plan_of, metric)
            if plan == want:
                break
            want = plan
        decided = sequential.decide(seen, plan_of, metric)
        used = [key for k, v in cells.items() for _, key, _ in v[: want[k]]]
        used += sorted({b for k, v in cells.items() for _, _, b in v[: want[k]]})  # the baselines they paired with
        out[name] = {
            "fit_s": sum(fit.get(k, 0.0) for k in used),
            "fit_s_median": sum(median.get(k, 0.0) for k in used),
            "runs": len(used),
            "decided": sum(d.verdict not in (sequential.OPEN, sequential.INCONCLUSIVE) for d in decided.values()),
            "seeds": sorted(want.values()),
        }
    return out


def adaptive_vs_fixed(base: Path, store: Path, cache: Path, grids: list[str], lo: int, hi: int,
                      work: Path | None = None) -> dict:  # fmt: skip
    """Each grid's fixed design (seeds 0..hi-1, timed), then its adaptive design (``seeds.min=lo seeds.max=hi``),
    all in one store. A run's key does not depend on ``seeds.mode``, so the adaptive sweep asks for a subset of
    the fixed design's runs (the first seeds of every cell, more only where the verdict is open) and reuses them:
    its training compute is the ``time/fit_s`` of exactly the runs it used, measured once, on the same machine
    and under the same load as the fixed design's (a cold adaptive sweep would train the same runs again, and its
    seconds would differ only by the machine's load). Its wall time here is the replay's, every run reused. Grids
    that share runs (the data-efficiency grid holds the quickstart's `synth_digits` cells) train them once; each
    design's compute still counts every run it used.

    ``work``: the work dir of an earlier run (``--adaptive-work``): its finished runs are reused, so an interrupted
    comparison resumes (the fixed design's wall time then covers only what was left). ``designs``: what other
    designs would have cost on the same runs (``replay_designs``)."""
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    from benchmark.sweep import find_state

    if work is not None and not (work / "mlflow.db").is_file():  # never recreate (and so empty) a directory given
        raise SystemExit(f"--adaptive-work {work}: no mlflow.db there; pass the 'adaptive' dir of an earlier run")
    work = work or _fresh(base, "adaptive", store, cache)
    out = {}
    for grid in grids:
        # each grid as its preset runs it (the quickstart: two jobs at once, one thread each; the data-efficiency grid
        # one job with every core): a fixed 2 threads ran the quickstart's two workers on 4 threads over 2 cores
        common = list(ADAPTIVE_GRIDS[grid])
        shutil.rmtree(work / "sweep", ignore_errors=True)
        fixed_wall, _ = _timed(_harness([*common, f"seed={','.join(str(s) for s in range(hi))}"], work, True))
        fixed_id = next(iter(_sweeps_cost(work / "mlflow.db", last=True)))
        shutil.rmtree(work / "sweep")
        replay_wall, _ = _timed(_harness([*common, "seeds.mode=adaptive", f"seeds.min={lo}", f"seeds.max={hi}"],
                                         work, True))  # fmt: skip
        state = find_state(work / "sweep")
        fixed = _sweeps_cost(work / "mlflow.db", only=fixed_id)[fixed_id]
        adaptive = next(iter(_sweeps_cost(work / "mlflow.db", last=True).values()))
        row = {"fixed": {**fixed, "wall_s": fixed_wall}, "adaptive": {**adaptive, "replay_wall_s": replay_wall}}
        f, a = fixed["cells"], adaptive["cells"]
        row["decided"] = {m: sum(v not in ("inconclusive", "?") for v in row[m]["cells"].values()) for m in row}
        row["agree"] = sum(f.get(k) == v for k, v in a.items())
        row["n_cells"] = len(f)
        row["design"] = state.design if state else None
        row["designs"] = replay_designs(work / "mlflow.db", fixed_id, state.design, state.metric) if state else {}
        out[grid] = row
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plain"]:
        print(json.dumps(plain(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-quickstart", action="store_true")
    parser.add_argument("--quickstart-seeds", type=int, default=3, help="seeds of the quickstart sweep (preset: 5)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="overhead frozen throughput share quickstart loading adaptive jobs")  # fmt: skip
    parser.add_argument("--jobs-seeds", type=int, default=2, help="seeds of the per-job overhead sweep (jobs)")
    parser.add_argument("--adaptive-grids", nargs="*", default=list(ADAPTIVE_GRIDS), choices=list(ADAPTIVE_GRIDS))
    parser.add_argument("--adaptive-seeds", nargs=2, type=int, default=[3, 10], metavar=("MIN", "MAX"))
    parser.add_argument("--adaptive-work", type=Path, default=None, metavar="WORK_DIR",
                        help="the adaptive comparison's work dir of an earlier run (tb-bench-*/adaptive): its "
                             "finished runs are reused, so an interrupted comparison resumes")  # fmt: skip
    args = parser.parse_args(argv)
    t_all = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    # a migrated store and a warm source cache, prepared once outside every timing
    from benchmark.tracking import open_store

    open_store(f"sqlite:///{base / 'store.db'}")
    prep = _fresh(base, "prepare", base / "store.db", None)
    _timed(_harness(["source=synth_digits,shapes", "strategy=scratch", "label_budget=1", "budget.min_steps=1",
                     "budget.epochs=1"], prep, multirun=True))  # fmt: skip
    # imported here, not at the top: `python -m benchmark.bench plain` (the reference) must not pay for them
    from benchmark import tracking
    from benchmark.compose import compose_job
    from benchmark.recipe import source_weights_file
    from benchmark.spec import Context

    client = tracking.open_store(f"sqlite:///{prep / 'mlflow.db'}")
    ctx = Context(client, tracking.ensure_experiment(client, "bench"), prep / "cache")
    for src in ("synth_digits", "shapes"):
        source_weights_file(compose_job([f"source={src}"]), ctx)  # pretrain both sources, untimed
    store, cache = base / "store.db", prep / "cache"
    shutil.rmtree(cache / "locks", ignore_errors=True)
    want = set(args.only or ["overhead", "jobs", "frozen", "throughput", "share", "quickstart", "loading", "adaptive"])
    if args.skip_quickstart:
        want.discard("quickstart")
    report: dict = {"machine": f"{os.cpu_count()} cores, torch threads 2", "reps": args.reps}
    steps = [("overhead", lambda: overhead(base, store, cache, args.reps)),
             ("jobs", lambda: jobs_overhead(base, store, cache, args.jobs_seeds)),
             ("frozen", lambda: frozen_features(base, store, cache, args.reps)),
             ("throughput", lambda: throughput(base, store, cache)),
             ("share", lambda: compute_share(base, store, cache)),
             ("quickstart", lambda: quickstart(base, args.quickstart_seeds)),
             ("loading", lambda: image_loading(base)),
             ("adaptive", lambda: adaptive_vs_fixed(base, store, cache, args.adaptive_grids,
                                                    *args.adaptive_seeds, work=args.adaptive_work))]  # fmt: skip
    for name, fn in steps:
        if name in want:
            t0 = time.perf_counter()
            report[name] = fn()
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    print_report(report)
    print(f"\nbenchmark wall time: {time.perf_counter() - t_all:.0f} s (work dir {base})")
    (base / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    return 0


def print_report(r: dict) -> None:
    print("\n== transfer-bench performance (medians; ratios measured side by side in this run) ==")
    for grid, g in r.get("adaptive", {}).items():
        fx, ad = g["fixed"], g["adaptive"]
        print(f"\nadaptive seeds vs fixed, {grid} grid ({g['n_cells']} cells): training {ad['fit_s']:.0f} s vs "
              f"{fx['fit_s']:.0f} s -> {ad['fit_s'] / fx['fit_s']:.2f}x (target <= 0.60x); runs {ad['runs']} vs "
              f"{fx['runs']}; fixed design's wall {fx['wall_s']:.0f} s (adaptive replay from its runs "
              f"{ad['replay_wall_s']:.0f} s); decided cells {g['decided']['adaptive']} vs {g['decided']['fixed']}; "
              f"verdicts agreeing {g['agree']} of {g['n_cells']}")  # fmt: skip
        for cell, verdict in sorted(fx["cells"].items()):
            print(f"  {cell}: fixed {verdict}, adaptive {ad['cells'].get(cell, '?')}")
        print("  other designs replayed on the fixed design's runs (no training; seeds per cell):")
        for name, d in g.get("designs", {}).items():
            print(f"    {name:<36} training {d['fit_s']:6.0f} s -> {d['fit_s'] / fx['fit_s']:.2f}x, "
                  f"runs {d['runs']:>3}, decided {d['decided']}, seeds {d['seeds']}")  # fmt: skip
    if "overhead" in r:
        o = r["overhead"]
        print(f"\n1. harness overhead, one cell (fine-tune, all labels): harness {o['harness_s']:.1f} s vs plain "
              f"PyTorch loop {o['plain_s']:.1f} s -> {o['ratio']:.2f}x  (target <= 1.10x)")  # fmt: skip
        print(f"   test acc: harness {o['harness_test_acc']:.4f}, plain loop {o['plain_test_acc']:.4f}")
        for k, v in o["breakdown"].items():
            print(f"   {k:<70} {v:7.2f} s")
    if "jobs" in r:
        j = r["jobs"]
        n, inside = j["jobs"], sum(p["time/job_s"] for p in j["trained"])
        harness = _phase_table(j["trained"])["harness (job wall - fit)"]
        print(f"\n1b. per-job overhead, quickstart grid ({n} jobs, warm source cache): command {j['cold_s']:.1f} s, "
              f"training (sum of time/fit_s) {j['fit_s']:.1f} s -> share {100 * j['fit_s'] / j['cold_s']:.0f}% "
              f"(target >= 90%); harness {harness:.2f} s per job inside jobs (target <= 0.3 s), "
              f"{(j['cold_s'] - j['fit_s']) / n:.2f} s per job over the whole command")  # fmt: skip
        print(f"   outside jobs (process start-up, preflight, the sweep's runs and report): "
              f"{j['cold_s'] - inside:.1f} s; importing what a job needs (python -c 'import benchmark.job') "
              f"{j['job_imports_s']:.1f} s")  # fmt: skip
        for label, rows in (("trained", j["trained"]), ("reused", j["reused"])):
            table = ", ".join(f"{k} {v:.3f}" for k, v in _phase_table(rows).items())
            print(f"   mean seconds per {label} job: {table}")
        print(f"   warm (every job reused): command {j['warm_s']:.1f} s, inside jobs "
              f"{sum(p['time/job_s'] for p in j['reused']):.1f} s")  # fmt: skip
        for i, p in enumerate(j["trained"]):
            print(f"   job {i:>2}: wall {p['time/job_s']:6.2f} s, fit {p.get('time/job_fit_s', 0.0):6.2f} s, harness "
                  f"{p['time/job_s'] - p.get('time/job_fit_s', 0.0):5.2f} s")  # fmt: skip
    if "frozen" in r:
        f = r["frozen"]
        print(f"\n2. frozen features (linear probe, all labels, {f['cached_epochs']:.0f} epochs): an epoch takes "
              f"{1000 * f['backbone_epoch_s']:.0f} ms re-running the backbone vs {1000 * f['cached_epoch_s']:.0f} ms "
              f"on cached features -> {f['speedup_per_epoch']:.1f}x per epoch (target >= 10x); whole fit incl. "
              f"extraction {f['backbone_run_s']:.2f} s vs {f['cached_run_s']:.2f} s "
              f"-> {f['speedup_per_run']:.1f}x")  # fmt: skip
        print(
            f"   test acc: backbone {f['backbone_acc']:.4f}, cached {f['cached_acc']:.4f} "
            f"(difference {100 * abs(f['backbone_acc'] - f['cached_acc']):.2f} points; target <= 0.5)"
        )
    if "throughput" in r:
        t = r["throughput"]
        print(f"\n3. sweep throughput ({t['jobs']} jobs): sequential (2 threads) {t['sequential_s']:.1f} s vs 2 "
              f"workers x 1 thread {t['parallel_s']:.1f} s -> {t['speedup']:.2f}x")  # fmt: skip
    if "share" in r:
        print("\n4. compute share (model forward + backward / cell wall time, PyTorch profiler; target >= 80%)")
        for k, v in r["share"].items():
            print(f"   {k:<14} wall {v['wall_s']:.2f} s, forward {v.get('model_forward', 0):.2f} s, backward "
                  f"{v.get('model_backward', 0):.2f} s -> {100 * v['share']:.0f}%")  # fmt: skip
    if "quickstart" in r:
        q = r["quickstart"]
        print(f"\n5. quickstart ({q.get('seeds', 5)} seeds): cold {q['cold_s']:.0f} s (pretraining included), warm "
              f"{q['warm_s']:.0f} s")  # fmt: skip
        workers = q.get("workers", 1)
        # jobs side by side: their seconds add up over the workers, so they are read against workers x wall time
        print(f"   cold: training (sum of time/fit_s; pretraining not included) {q['cold_fit_s']:.0f} s, inside jobs "
              f"{q['cold_jobs_s']:.0f} s (set-up, tests, scores...) summed over {workers} worker(s): "
              f"{100 * q['cold_jobs_s'] / (workers * q['cold_s']):.0f}% of {workers} x the wall time, the rest "
              f"start-up, preflight, the sources' pretraining, the sweep's report and idle workers; warm: inside jobs "
              f"{q['warm_jobs_s']:.1f} s, outside jobs {q['warm_s'] - q['warm_jobs_s']:.1f} s")  # fmt: skip
    if "loading" in r:
        d = r["loading"]
        print(f"\n6. image folder loading ({d['images']} JPEGs of 256 px -> {d['size']} px, {d['workers']} workers): "
              f"{d['load_img_s']:.0f} images/s loading vs {d['train_img_s']:.0f} images/s training {d['arch']} "
              f"-> loading is {d['load_img_s'] / d['train_img_s']:.1f}x the training rate (target >= 1x)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
