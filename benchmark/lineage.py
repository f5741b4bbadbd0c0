"""Lineage in MLflow beyond tags: the datasets a run read (dataset inputs), the model it produced (a logged MLflow
PyTorch model) and the machine it ran on (system metrics), all through an explicit client and run id.

MLflow's fluent helpers (``mlflow.pytorch.log_model``, ``mlflow.log_input``, ``start_run(log_system_metrics=...)``)
read the process-wide tracking URI and active run, and ``log_model`` without an active run files its LoggedModel
under the default experiment: a sweep whose jobs share one process would mix stores. Here each step is the client
call those helpers make (create the LoggedModel, save the flavor, upload, link it to the run as an output, mark it
READY), so a run's status and end time are never touched.

What is logged is chosen by ``tracking.log_models`` / ``register_models`` / ``system_metrics`` (``Lineage``);
the default logs datasets only, so a sweep costs what it did.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec
from torch import nn

from benchmark.data import Splits
from benchmark.util import stable_hash

log = logging.getLogger(__name__)

LOG_MODELS = {"none": (), "transfer": ("transfer",), "all": ("transfer", "baseline")}
"""``tracking.log_models`` choices -> the run roles whose trained model is logged. Any choice but ``none`` also logs
the harness-pretrained source (its pretrain run's model)."""

MODEL_NAME = "model"
"""The logged model's name: ``runs:/<run_id>/model`` loads it (so does ``models:/<model_id>``)."""

DATA_CONTEXT = "mlflow.data.context"
"""MLflow's tag of a dataset input saying what the run used it for (here ``target`` or ``source``)."""


@dataclass(frozen=True)
class Lineage:
    """What a run records beyond its tags, params and metrics (``tracking.*`` in ``conf/tracking/*.yaml``).

    ``log_models``: ``none`` | ``transfer`` | ``all`` (``LOG_MODELS``); ``register_models``: also register each
    logged model as a version of the registered model named after its cell; ``system_metrics``: MLflow's
    ``system/*`` metrics (CPU, memory, disk, network, GPU) every ``system_metrics_interval_s`` while a run trains.
    """

    log_models: str = "none"
    register_models: bool = False
    system_metrics: bool = False
    system_metrics_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.log_models not in LOG_MODELS:
            raise ValueError(
                f"tracking.log_models={self.log_models!r} is not a valid choice; choose one of: {', '.join(LOG_MODELS)}"
            )
        if self.register_models and self.log_models == "none":
            raise ValueError("tracking.register_models=true registers logged models; set tracking.log_models too")
        if self.system_metrics and importlib.util.find_spec("psutil") is None:
            raise ValueError("tracking.system_metrics=true needs psutil, which MLflow samples with: pip install psutil")
        if self.system_metrics_interval_s <= 0:
            raise ValueError(f"tracking.system_metrics_interval_s={self.system_metrics_interval_s} must be > 0")

    def logs_model(self, role: str) -> bool:
        """Whether a run of ``role`` (``transfer``, ``baseline``, ``pretrain``) logs its trained model."""
        return role in LOG_MODELS[self.log_models] or (role == "pretrain" and self.log_models != "none")


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def dataset_input(name: str, config: Mapping[str, Any], splits: Splits, context: str) -> DatasetInput:
    """A dataset input for ``splits`` of dataset ``name`` loaded from ``config`` (its unresolved target config).

    The digest hashes the config and the split sizes, what the loader turns into data: MLflow keeps one dataset per
    (name, digest) in an experiment, so every run of a target links to the same record, and a changed config (more
    examples, another shift) is a new one. The profile holds the split sizes and classes; the schema the image
    tensor as one item of the loaded data (before the source's preprocessing).
    """
    sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    profile = {**sizes, "num_classes": splits.num_classes, "classes": [str(c) for c in splits.classes][:100]}
    image, _ = splits.train[0]
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(str(image.dtype).removeprefix("torch.")), (-1, *image.shape), "image")]),
        targets=Schema([TensorSpec(np.dtype("int64"), (-1,), "label")]),
    )
    source = {"dataset": name, **{k: v for k, v in config.items()}}
    return DatasetInput(
        Dataset(
            name=name,
            digest=stable_hash({"config": config, "sizes": sizes}, 16),
            source_type="code",  # generated or read by the target's loader (``_target_``), not a file MLflow knows
            source=json.dumps(source, sort_keys=True, default=str),
            schema=json.dumps(schema.to_dict()),
            profile=json.dumps(profile),
        ),
        tags=[InputTag(DATA_CONTEXT, context)],
    )


def log_datasets(client: MlflowClient, run_id: str, inputs: list[DatasetInput]) -> None:
    """Link the datasets to the run (the run page's Datasets panel); logging one again (a resumed run) is a no-op.

    MLflow's SQL store checks whether a dataset exists, then inserts it: two jobs of a parallel sweep logging the
    same dataset at once can both miss it, and the second insert fails on the table's unique constraint. The first
    has then stored it, so logging again finds it and only links it (seen with Slurm's local executor)."""
    for attempt in range(3):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as exc:
            if ("UNIQUE constraint failed" not in str(exc) and "duplicate key" not in str(exc)) or attempt == 2:
                raise
            time.sleep(0.1 * (attempt + 1))


# ----------------------------------------------------------------------------------------------------------------
# Models


MODEL_FORMAT = "pt2"
"""How logged models are saved: a ``torch.export`` program, which loads without unpickling (``pickle`` would run
whatever code a file holds when it is loaded)."""


def pip_requirements() -> list[str]:
    """What loading a logged model needs: torch and timm at this process's versions (given, not inferred: MLflow's
    inference loads the model in a subprocess, seconds per run). The harness itself is not needed to load one."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"timm=={timm.__version__}"]


def log_model(
    client: MlflowClient,
    run_id: str,
    model: nn.Module,
    example: torch.Tensor,
    tags: Mapping[str, str] | None = None,
    registered_name: str | None = None,
) -> str:
    """Log ``model`` (its current weights: after a fit, the selected ones the test split was scored with) as the
    MLflow PyTorch model ``model`` of run ``run_id``; returns its model id.

    ``example`` is a small batch of preprocessed inputs: saved as the input example, and the signature (inputs
    N×C×H×W, outputs N×classes logits) is inferred from it. The model is saved on the CPU in eval mode as a
    ``torch.export`` program (MLflow's ``pt2`` format, ``data/model.pt2``), never pickled: loading it, with
    ``mlflow.pytorch.load_model``, executes no code from the file, so a colleague's model from a shared store is safe
    to open. It is traced with ``example``'s shape, batch size free. ``registered_name``: also register it as a new
    version of that registered model.
    """
    # here, not at the top: MLflow's model flavors cost ~1.7 s of imports, and runs log no model by default
    import mlflow.pytorch
    from mlflow.models import Model, infer_signature

    t0 = time.perf_counter()
    run = client.get_run(run_id)
    cpu = copy.deepcopy(model).cpu().eval()
    x = example.detach().cpu().float()[:4].contiguous()
    with torch.inference_mode():
        y = cpu(x)
    signature = infer_signature(x.numpy(), y.float().numpy())
    logged = client.create_logged_model(
        run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, tags=dict(tags or {}), model_type="classifier"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_NAME
            meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                         model_id=logged.model_id)  # fmt: skip
            with _quiet("mlflow.pytorch", "mlflow.models.model"):
                mlflow.pytorch.save_model(cpu, path, mlflow_model=meta, signature=signature, input_example=x.numpy(),
                                          pip_requirements=pip_requirements(),
                                          serialization_format=MODEL_FORMAT)  # fmt: skip
            client.log_model_artifacts(logged.model_id, str(path))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    if registered_name:
        register(client, registered_name, logged.model_id, run_id)
    log.info("logged model %s of run %s in %.1f s", logged.model_id, run_id, time.perf_counter() - t0)
    return logged.model_id


def register(client: MlflowClient, name: str, model_id: str, run_id: str) -> str:
    """A new version of registered model ``name`` (created when missing) pointing at logged model ``model_id``."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # another job created it meanwhile
            client.create_registered_model(name)
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id)
    return version.version


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ----------------------------------------------------------------------------------------------------------------
# System metrics


@contextlib.contextmanager
def system_metrics(client: MlflowClient, run_id: str, settings: Lineage, resumed: bool = False) -> Iterator[None]:
    """MLflow's ``SystemMetricsMonitor`` on ``run_id`` while the block runs (when ``settings.system_metrics``):
    a thread samples CPU, memory, disk, network and GPU and logs ``system/*`` metrics through the run's own tracking
    URI; a resumed run continues their steps. Stopped before the run ends, whatever the block raised."""
    if not settings.system_metrics:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # needs psutil: only when asked

    monitor = SystemMetricsMonitor(run_id, sampling_interval=settings.system_metrics_interval_s,
                                   resume_logging=resumed, tracking_uri=client.tracking_uri)  # fmt: skip
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
