"""Pretrain weights: the harness pretrains the source's architecture on a labelled dataset (a target config) with
the source's recipe, once; the checkpoint is cached content-addressed, logged to MLflow and reused in seconds (and,
with ``tracking.log_models`` other than ``none``, logged as an MLflow PyTorch model of its pretrain run)."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from benchmark import identity, lineage, tracking
from benchmark.data import seed_hash
from benchmark.models import build_model
from benchmark.module import Optimization
from benchmark.sources.weights import LabelledData, SourceWeights
from benchmark.splits import load_splits
from benchmark.strategies.scratch import Scratch
from benchmark.train import Budget, TrainerSettings, fit_and_test
from benchmark.util import file_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainRecipe:
    """How the harness pretrains a source on its dataset. Part of the checkpoint's content address."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 3.0e-3
    weight_decay: float = 0.05
    seed: int = 0


class PretrainWeights(SourceWeights):
    """Weights the harness trains itself on ``dataset`` (a target config, e.g. ``/target@weights.dataset:
    synth_digits`` in the source's defaults) with ``recipe``. The only kind with labelled source data."""

    kind = "pretrain"

    def __init__(self, dataset: DictConfig | dict | None = None, recipe: DictConfig | dict | None = None, **kw: Any):
        super().__init__(**kw)
        if dataset is None:
            raise ValueError(f"source {self.source_id!r}: pretrain weights need weights.dataset (a target config)")
        node = dataset if isinstance(dataset, DictConfig) else OmegaConf.create(dataset)
        self.dataset_config: dict[str, Any] = OmegaConf.to_container(node, resolve=False)
        self.dataset = instantiate(node)
        self.dataset_id = self.dataset_id or "dataset"
        recipe = OmegaConf.to_container(recipe, resolve=True) if isinstance(recipe, DictConfig) else recipe
        self.recipe = PretrainRecipe(**(recipe or {}))

    def problems(self, uses_weights: bool) -> list[str]:
        found = self.dataset.problems()
        return [f"source {self.source_id!r} pretraining dataset: " + "; ".join(found)] if found else []

    def local_file(self, source: Any, ctx: Any, trainer: TrainerSettings) -> Path:
        return ensure_pretrained(source, ctx, trainer)

    def origin(self, file: Path | None) -> str:
        return f"pretrained checkpoint {str(file)!r}"

    @property
    def labelled_data(self) -> LabelledData:
        return LabelledData(self.dataset_id, self.dataset, self.dataset_config)


def ensure_pretrained(source: Any, ctx: Any, trainer: TrainerSettings) -> Path:
    """The checkpoint file of ``source``; trained (once, under a lock) when neither cache nor MLflow has it.

    ``source`` is a ``benchmark.spec.SourceSpec`` with these weights, ``ctx`` the job's ``benchmark.spec.Context``.
    A FINISHED pretrain run with the same key in the experiment (e.g. a store copied from another machine) is
    downloaded instead of retrained.
    """
    weights = source.weights
    key = identity.pretrain_key(source)
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


def _pretrain(source: Any, key: str, path: Path, ctx: Any, trainer: TrainerSettings) -> None:
    weights = source.weights
    recipe = weights.recipe
    splits = load_splits(weights.dataset_id, weights.dataset, weights.dataset_config)
    tags = {
        "role": "pretrain",
        "source": source.id,
        "arch": source.arch,
        "target": weights.dataset_id,
        "pretrain_key": key,
        "git_sha": ctx.git_sha,  # versions and MLflow's context tags: tracking.create_run
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
        dataset = lineage.dataset_input(weights.dataset_id, weights.dataset_config, splits, "source")
        lineage.log_datasets(ctx.client, run_id, [dataset])
        pl.seed_everything(seed_hash("pretrain", key, recipe.seed) % 2**32, workers=True, verbose=False)
        model = build_model(source.arch, splits.num_classes, source.preprocessing, **source.model_kwargs)
        prep = source.preprocessing
        test = prep.apply(splits.test)
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
            test,
            splits.num_classes,
            budget,
            # AdamW's per-tensor loop, whatever the job's trainer says: the checkpoint is cached and found by its
            # recipe (identity.pretrain_key), which no trainer setting enters
            replace(trainer, fused_optimizer=False),
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
        if ctx.lineage.logs_model("pretrain"):  # the source as an MLflow model too, with its own head (its classes)
            example = torch.stack([test[i][0] for i in range(min(4, len(test)))])
            lineage.log_model(ctx.client, run_id, model, example, {"role": "pretrain", "source": source.id})
        tracking.end_run(ctx.client, run_id)
        log.info("source %s: test/acc on %s = %.3f", source.id, weights.dataset_id, result.metrics.get("test/acc", 0))
    except BaseException as exc:
        tracking.record_failure(ctx.client, run_id, exc)
        raise
