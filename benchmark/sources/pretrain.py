"""Sources the harness pretrains itself: train once, cache content-addressed, log to MLflow, reuse in seconds."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
from safetensors.torch import save_file

from benchmark import provenance, tracking
from benchmark.data import seed_hash
from benchmark.module import Optimization
from benchmark.sources.models import PretrainWeights, SourceSpec, build_model
from benchmark.strategies.scratch import Scratch
from benchmark.train import Budget, TrainerSettings, fit_and_test
from benchmark.util import file_lock, stable_hash

log = logging.getLogger(__name__)


def pretrain_key(source: SourceSpec) -> str:
    """Content address of a pretrained checkpoint: architecture, preprocessing, dataset config and recipe."""
    weights = source.weights
    if not isinstance(weights, PretrainWeights):
        raise TypeError("pretrain_key needs a source with pretrain weights")
    return stable_hash(
        {
            "arch": source.arch,
            "model_kwargs": source.model_kwargs,
            "preprocessing": asdict(source.preprocessing),
            "dataset": weights.dataset_config,
            "recipe": asdict(weights.recipe),
        }
    )


def ensure_pretrained(source: SourceSpec, ctx, trainer: TrainerSettings) -> Path:
    """The checkpoint file of ``source``; trained (once, under a lock) when neither cache nor MLflow has it.

    ``ctx`` is the job's ``benchmark.job.Context``. A FINISHED pretrain run with the same key in the experiment
    (e.g. a store copied from another machine) is downloaded instead of retrained.
    """
    weights = source.weights
    key = pretrain_key(source)
    path = ctx.cache_dir / "sources" / f"{source.arch}-{weights.dataset_id}-{key}.safetensors"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return path
        previous = tracking.find_runs(ctx.client, ctx.experiment_id, "pretrain_key", key)
        for run in previous:
            try:
                with tempfile.TemporaryDirectory(dir=path.parent) as tmpdir:
                    local = ctx.client.download_artifacts(run.info.run_id, "checkpoint/model.safetensors", tmpdir)
                    os.replace(local, path)
                log.info("reused pretrained source %s from MLflow run %s", source.id, run.info.run_id)
                return path
            except Exception as exc:
                log.warning("could not fetch checkpoint of run %s (%s); pretraining again", run.info.run_id, exc)
        _pretrain(source, key, path, ctx, trainer)
    return path


def _pretrain(source: SourceSpec, key: str, path: Path, ctx, trainer: TrainerSettings) -> None:
    from benchmark.job import load_splits

    weights = source.weights
    recipe = weights.recipe
    splits = load_splits(weights.dataset_id, weights.dataset, weights.dataset_config)
    tags = {
        "role": "pretrain",
        "source": source.id,
        "arch": source.arch,
        "target": weights.dataset_id,
        "pretrain_key": key,
        "git_sha": ctx.git_sha,
        **provenance.versions(),
    }
    if ctx.sweep_id:
        tags["sweep_id"] = ctx.sweep_id
    name = f"pretrain__{source.id}__{source.arch}__{weights.dataset_id}"
    run_id = tracking.create_run(ctx.client, ctx.experiment_id, name, tags, ctx.parent_run_id)
    log.info("pretraining source %s (%s on %s), MLflow run %s", source.id, source.arch, weights.dataset_id, run_id)
    try:
        tracking.log_params(
            ctx.client,
            run_id,
            tracking.flatten({"recipe": asdict(recipe), "dataset": weights.dataset_config, "arch": source.arch}),
        )
        pl.seed_everything(seed_hash("pretrain", key, recipe.seed) % 2**32, workers=True, verbose=False)
        model = build_model(source.arch, splits.num_classes, source.preprocessing, **source.model_kwargs)
        prep = source.preprocessing
        budget = Budget(
            epochs=recipe.epochs,
            min_steps=0,
            batch_size=recipe.batch_size,
            optimization=Optimization(lr=recipe.lr, weight_decay=recipe.weight_decay),
        )
        result = fit_and_test(
            model,
            Scratch(),
            prep.apply(splits.train),
            prep.apply(splits.val),
            prep.apply(splits.test),
            splits.num_classes,
            budget,
            trainer,
            recipe.seed,
            client=ctx.client,
            run_id=run_id,
        )
        tracking.log_metrics(ctx.client, run_id, result.metrics)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmpdir:
            tmp = Path(tmpdir) / "model.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
            ctx.client.log_artifact(run_id, str(tmp), "checkpoint")
            os.replace(tmp, path)  # atomic: a reader never sees a half-written checkpoint
        tracking.end_run(ctx.client, run_id)
        log.info("source %s: test/acc on %s = %.3f", source.id, weights.dataset_id, result.metrics.get("test/acc", 0))
    except BaseException as exc:
        tracking.record_failure(ctx.client, run_id, exc)
        raise
