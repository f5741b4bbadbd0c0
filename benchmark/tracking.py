"""MLflow conventions: store location, experiments, run names, tags, params and run lifecycle.

Tags identify a run (``source``, ``target``, ``strategy``, ``seed``, ``label_budget``, ``arch``, ``role``,
``run_key``, ``cell_key``, ``variant`` (``benchmark.identity``), ``baseline_key``, ``sweep_id``, ``verdict``, and the
code that ran it: ``git_sha``, ``version/*`` and MLflow's ``mlflow.user``/``mlflow.source.*`` (``benchmark.provenance``,
set on every run by ``create_run``)), params configure it (the resolved config
flattened with ``/``), metrics measure it (``{stage}/{name}``). Everything goes through an explicit
``MlflowClient(tracking_uri)`` and explicit run ids: no fluent API, no ``MLFLOW_RUN_ID``, no logger defaults.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from benchmark import provenance

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI then opens on the runs table, not a GenAI overview
NOTE_TAG = "mlflow.note.content"  # rendered as Markdown on the run page
PARAM_VALUE_LIMIT = 6000


def resolve_uri(uri: str | None, root: Path) -> str:
    """The tracking URI: the config value, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``.

    A relative SQLite path is made absolute against ``root`` so every job of a sweep writes the same file.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        if not Path(rel).is_absolute():
            uri = f"sqlite:///{(Path(root) / rel).resolve()}"
    if uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks")):
        raise ValueError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 no longer supports; use sqlite:///<absolute path> "
            "or http://host:port of an `mlflow server`"
        )
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def open_store(uri: str) -> MlflowClient:
    """A client for ``uri``; a new SQLite store is created (migrated) here, once, and switched to WAL mode.

    Create the store in the launching process before any job starts: several processes migrating a fresh SQLite
    file at once corrupt it. WAL lets readers (the UI, reports) work while a sweep writes.
    """
    path = sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)  # forces creation and migration of the store
    if path is not None:
        with sqlite3.connect(path, timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None = None) -> str:
    """The id of experiment ``name``, created (with an absolute artifact location) when missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or choose another tracking.experiment")
        if EXPERIMENT_KIND_TAG not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    if artifact_root is None and sqlite_path(client.tracking_uri) is not None:
        # MLflow's default would be ./mlruns relative to whatever the current directory is: keep them by the store
        artifact_root = sqlite_path(client.tracking_uri).parent / "mlartifacts"
    location = (Path(artifact_root).resolve() / name).as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": "1"}``; lists become their string form."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = str(value)
    return out


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in batches of 100, truncating values to MLflow's limit."""
    items = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100], synchronous=True)


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """One ``log_batch`` for many metrics (one database round trip instead of one per metric)."""
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000], synchronous=True)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[i : i + 100], synchronous=True)


def create_run(
    client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, Any], parent_run_id: str | None = None
) -> str:
    """A new RUNNING run; nested under ``parent_run_id`` through the ``mlflow.parentRunId`` tag.

    Every run kind (transfer, baseline, pretrain, cell, sweep) gets the code's provenance (``git_sha``,
    ``version/*``) and MLflow's context tags (``mlflow.user``, ``mlflow.source.*``) here; ``tags`` may override them
    (a job's ``Context.git_sha``)."""
    defaults = {**provenance.tags(), **provenance.context_tags(), **owner_tags()}
    all_tags = {**defaults, **{k: str(v) for k, v in tags.items()}}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    return client.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id


def find_runs(
    client: MlflowClient, experiment_id: str, tag: str, value: str, statuses: Iterable[str] = ("FINISHED",)
) -> list:
    """Runs with ``tags.<tag> = value`` in one of ``statuses``, newest first (MLflow's filter has no OR)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{tag} = '{value}'",
        max_results=1000,
        order_by=["attributes.start_time DESC"],
    )
    allowed = set(statuses)
    return [r for r in runs if r.info.status in allowed]


def find_finished(client: MlflowClient, experiment_id: str, run_key: str):
    """The newest FINISHED run with this run key, or None."""
    runs = find_runs(client, experiment_id, "run_key", run_key)
    return runs[0] if runs else None


def end_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    client.set_terminated(run_id, status=status)


def record_failure(client: MlflowClient, run_id: str, exc: BaseException) -> str:
    """Mark a run FAILED (KILLED for Ctrl-C/SIGTERM) with its traceback as an artifact and a reason tag."""
    killed = isinstance(exc, (KeyboardInterrupt, SystemExit))
    status = "KILLED" if killed else "FAILED"
    reason = f"{type(exc).__name__}: {exc}".strip()[:500]
    try:
        client.log_text(run_id, "".join(traceback.format_exception(exc)), "traceback.txt")
        set_tags(client, run_id, {"failure_reason": reason})
    finally:
        client.set_terminated(run_id, status=status)
    return status


def status_name(status: int | str) -> str:
    return status if isinstance(status, str) else RunStatus.to_string(status)


# ----------------------------------------------------------------------------------------------------------------
# Liveness: no run stays RUNNING after its process died


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a live process from a reused PID."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tags() -> dict[str, str]:
    """Host, PID and process start time of this process, plus a heartbeat; set on every run it creates."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": str(pid),
        "pid_start": _process_start(pid) or "",
        "heartbeat": str(int(time.time())),
    }


def heartbeat(client: MlflowClient, run_id: str) -> None:
    client.set_tag(run_id, "heartbeat", str(int(time.time())))


def is_stale(tags: Mapping[str, str], stale_after_s: float, now: float | None = None) -> str | None:
    """Why a RUNNING run is dead, or None while its owner may still be alive.

    On the same host the owner PID must exist with the same start time (a reused PID does not count); on another
    host the heartbeat (refreshed every epoch) must be younger than ``stale_after_s``.
    """
    now = time.time() if now is None else now
    if tags.get("host") == socket.gethostname() and tags.get("pid"):
        start = _process_start(int(tags["pid"]))
        if start is None or (tags.get("pid_start") and start != tags["pid_start"]):
            return f"process {tags['pid']} on {tags['host']} is gone"
        return None
    beat = tags.get("heartbeat")
    if beat and now - float(beat) > stale_after_s:
        return f"no heartbeat from {tags.get('host', '?')} for {now - float(beat):.0f} s (> {stale_after_s:.0f} s)"
    return None


def reap_stale(client: MlflowClient, experiment_id: str, stale_after_s: float = 3600.0) -> list[str]:
    """Mark RUNNING runs whose process died as FAILED (tag ``failure_reason``); returns their ids."""
    reaped = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000):
        reason = is_stale(run.data.tags, stale_after_s)
        if reason:
            set_tags(client, run.info.run_id, {"failure_reason": f"stale: {reason}"})
            client.set_terminated(run.info.run_id, status="FAILED")
            log.warning("marked stale run %s (%s) FAILED: %s", run.info.run_id, run.info.run_name, reason)
            reaped.append(run.info.run_id)
    return reaped
