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
import re
import socket
import sqlite3
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from benchmark import provenance

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI then opens on the runs table, not a GenAI overview
NOTE_TAG = "mlflow.note.content"  # rendered as Markdown on the run page
PARAM_VALUE_LIMIT = 6000


def check_shared_store(uri: str, jobs_run_here: bool) -> None:
    """A ValueError when jobs that run on other machines (Slurm, Ray) would share a SQLite file: it would sit on a
    network filesystem, where SQLite's locking and write-ahead log are unsupported (lost writes, a corrupt store).
    Jobs of a launcher that runs them here may share one file: they lock it on this machine's filesystem."""
    if jobs_run_here or not uri.startswith("sqlite:"):
        return
    raise ValueError(
        f"tracking URI {uri!r} is a SQLite file, and this launcher runs the jobs on other machines: SQLite over a "
        "network filesystem loses writes. Point every job at one tracking server: tracking=server "
        "tracking.uri=http://<host>:<port> (scripts/mlflow_server.sh; docs/how-to/clusters-and-team-server.md)"
    )


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
    A tracking server this process already found down (``note_unreachable``) is probed once instead of waited for
    again: ``ServerUnreachable`` at once while it is still down.

    A database store this process already opened is not opened again: the jobs of a sweep share one process (Hydra's
    basic launcher) and so one client (``_OPENED``); a tracking server is asked each time (it may have gone down).
    A SQLite file deleted or replaced since is opened anew: the old client's connections would go on reading and
    writing the old file, and what they wrote would vanish with it.
    """
    path = sqlite_path(uri)
    if uri in _OPENED:
        if _OPENED[uri][1] == _file_identity(path):
            return _OPENED[uri][0]
        _forget_store(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if uri in _DOWN:
        check_server(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)  # forces creation and migration of the store
    except Exception as exc:
        if is_http(uri) and note_unreachable(uri, exc):
            raise ServerUnreachable(unreachable_message(uri, str(exc)[:300])) from exc
        raise
    if path is not None:
        with sqlite3.connect(path, timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")
    if not is_http(uri):
        _OPENED[uri] = (client, _file_identity(path))
    return client


_OPENED: dict[str, tuple[MlflowClient, tuple[int, int] | None]] = {}
"""Database stores this process opened (migrated, in WAL mode), by URI, with the SQLite file's identity then:
``open_store`` hands out the same client while that file is there."""


def _forget_store(uri: str) -> None:
    """Make MLflow open the database at ``uri`` anew: it keeps one store object per URI (its store registries'
    caches) and one SQLAlchemy engine per URI, whose pooled connections hold the file they opened. Private MLflow
    state, pinned below MLflow's next minor releases in ``pyproject.toml``."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for store_cls in (SqlAlchemyStore, RegistryStore):
        engine = store_cls._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
    tracking_utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    if registry_utils._model_registry_store_registry is not None:
        registry_utils._model_registry_store_registry._get_store_with_resolved_uri.cache_clear()
    del _OPENED[uri]


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """A SQLite file's (device, inode), None for a store that is no file; (-1, -1) where no file is."""
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def checkpoint_stores() -> None:
    """Fold each database store's write-ahead log into the database file, before the process exits.

    ``benchmark.run.main`` freezes the garbage collector at exit, so MLflow's SQLAlchemy connections are never
    closed and SQLite's own checkpoint on the last close never runs: the latest runs would stay in ``mlflow.db-wal``
    (safe, SQLite replays it on the next open) and a copy of ``mlflow.db`` alone, the file users copy and share,
    would silently lack them. A checkpoint from a fresh connection works while the others are still open."""
    for uri in _OPENED:
        path = sqlite_path(uri)
        if path is not None and path.is_file():
            checkpoint(path)


def checkpoint(path: Path) -> None:
    """Fold the write-ahead log of the SQLite store at ``path`` into its file, so that a copy of the file alone holds
    every run (a fresh connection can do it while others are still open)."""
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


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


def finished_runs(client: MlflowClient, experiment_id: str) -> dict[str, Any]:
    """The newest FINISHED run of every run key in the experiment, by key: ``find_finished`` for all keys at once.

    One paged query instead of one per key (MLflow's filter has no ``IN`` for tags): on the quickstart's store, 0.1 s
    for its 50 keys against 0.5 s key by key. It reads every keyed run of the experiment, so a sweeper asks it once
    per batch of jobs, never per job."""
    out: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'FINISHED' and tags.run_key IS NOT NULL",
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        for run in page:
            out.setdefault(run.data.tags["run_key"], run)  # newest first: the first one seen is the newest
        token = page.token
        if not token:
            return out


def end_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    client.set_terminated(run_id, status=status)


def record_failure(client: MlflowClient, run_id: str, exc: BaseException) -> str:
    """Mark a run FAILED (KILLED for Ctrl-C/SIGTERM) with its traceback as an artifact and a reason tag.

    Not when the tracking server is unreachable (``exc`` says so, or this process found it down): the run cannot
    be marked and stays RUNNING until the next sweep's ``reap_stale`` marks it FAILED; returns ``"RUNNING"``.
    """
    if client.tracking_uri in _DOWN or note_unreachable(client.tracking_uri, exc):
        log.error("run %s stays RUNNING: the tracking server %s is unreachable; the next sweep marks it FAILED "
                  "(stale) and trains its key again", run_id, client.tracking_uri)  # fmt: skip
        return "RUNNING"
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


# ----------------------------------------------------------------------------------------------------------------
# Outages of a tracking server: a bounded wait, then a clean failure


class ServerUnreachable(ConnectionError):
    """The tracking server did not answer (its message says which one and what to do)."""


MAX_RETRIES, MAX_BACKOFF_FACTOR = 10, 120  # the most MLflow's client accepts (_MLFLOW_HTTP_REQUEST_*_LIMIT)
MAX_SLEEP_S = 120.0  # urllib3's cap on one back-off sleep (Retry.DEFAULT_BACKOFF_MAX)
START_WAIT_S = 10.0  # how long a sweep waits at start for a server that does not answer (one just started)

_DOWN: set[str] = set()
"""Tracking URIs this process waited a whole outage bound for in vain: later jobs of the process probe them once
(``check_server``) instead of each waiting the bound again, so a sweep against a server that stays down ends soon."""


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def backoff_s(retries: int, factor: int) -> float:
    """Seconds MLflow's client sleeps between ``retries + 1`` refused tries (urllib3's schedule: nothing after the
    first failure, then ``factor * 2**(n - 1)`` after the n-th, each capped at ``MAX_SLEEP_S``; jitter left out)."""
    return float(sum(min(MAX_SLEEP_S, factor * 2 ** (n - 1)) for n in range(2, retries + 1)))


def retry_plan(outage_s: float) -> tuple[int, int, float]:
    """``(retries, backoff factor, seconds)``: the most retries whose back-off lasts at least ``outage_s`` and at
    most a quarter longer (the doubling makes exact bounds impossible), so that a server back early is found early.
    """
    if not backoff_s(2, 1) <= outage_s <= backoff_s(MAX_RETRIES, MAX_BACKOFF_FACTOR):
        raise ValueError(
            f"tracking.outage_s={outage_s} is out of range; choose {backoff_s(2, 1):.0f} <= outage_s <= "
            f"{backoff_s(MAX_RETRIES, MAX_BACKOFF_FACTOR):.0f} (MLflow's client allows {MAX_RETRIES} retries, "
            f"back-off factor <= {MAX_BACKOFF_FACTOR}), or null for MLflow's own retries"
        )
    fallback = None
    for retries in range(MAX_RETRIES, 1, -1):
        factor = next((f for f in range(1, MAX_BACKOFF_FACTOR + 1) if backoff_s(retries, f) >= outage_s), None)
        if factor is None:
            continue
        total = backoff_s(retries, factor)
        if total <= 1.25 * outage_s:
            return retries, factor, total
        if fallback is None or total < fallback[2]:
            fallback = (retries, factor, total)
    return fallback or (MAX_RETRIES, MAX_BACKOFF_FACTOR, backoff_s(MAX_RETRIES, MAX_BACKOFF_FACTOR))


def bound_outage(outage_s: float | None) -> float | None:
    """Make this process's MLflow client (and the job processes it starts) give up on an unreachable server after
    about ``outage_s`` seconds of retries (``retry_plan``), through MLflow's ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and
    ``..._BACKOFF_FACTOR``; returns the planned seconds. ``None`` leaves MLflow's own retries (7, factor 2: about
    4 minutes). The bound holds for a refused connection (server down, host up); a host that does not answer at all
    adds up to ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (120 s) per try."""
    if outage_s is None:
        return None
    retries, factor, total = retry_plan(float(outage_s))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(factor)
    return total


def probe(uri: str, timeout_s: float = 5.0) -> str | None:
    """None when the server at ``uri`` answers ``/health``; else why not. Any HTTP answer but a gateway error counts
    as an answer (a proxy that asks for credentials is up)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}" if exc.code in (502, 503, 504) else None
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def unreachable_message(uri: str, why: str) -> str:
    return (
        f"the MLflow tracking server {uri} is not reachable ({why}). Start it (scripts/mlflow_server.sh) or point "
        "tracking.uri / MLFLOW_TRACKING_URI at a running server, then run the same command again: finished runs are "
        "reused, only what is missing is trained."
    )


def check_server(uri: str, wait_s: float = 0.0) -> None:
    """Return once the tracking server at ``uri`` answers (waiting up to ``wait_s``); else ``ServerUnreachable``
    naming it. Nothing to check for a database URI."""
    if not is_http(uri):
        return
    deadline = time.monotonic() + wait_s
    while True:
        why = probe(uri)
        if why is None:
            _DOWN.discard(uri)
            return
        if time.monotonic() >= deadline:
            _DOWN.add(uri)
            raise ServerUnreachable(unreachable_message(uri, why))
        time.sleep(1.0)


CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""MLflow's own credential variables, the only way credentials reach the harness (``benchmark.credentials``)."""


def check_access(uri: str) -> None:
    """A ``ValueError`` when the tracking server at ``uri`` refuses this process's credentials (HTTP 401: none or
    wrong; 403: not allowed), naming what to set, before anything trains. Asks through MLflow's own client, so the
    credentials, TLS and proxy settings are exactly those the jobs will use (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``
    or ``_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``...). The password is never printed. Nothing to check for a
    database URI; a server that does not answer is ``check_server``'s to report."""
    if not is_http(uri):
        return
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return
    except Exception as exc:  # MLflow raises its own exceptions for HTTP errors: read the status from them
        status = _http_status(exc)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    given = (f"MLFLOW_TRACKING_USERNAME={user!r} and its password" if user is not None
             else "MLFLOW_TRACKING_TOKEN" if os.environ.get("MLFLOW_TRACKING_TOKEN") else None)  # fmt: skip
    if status == 401:
        raise ValueError(
            f"the tracking server {uri} asks for credentials (HTTP 401) and "
            + (f"refused those given ({given})" if given else "none were given")
            + ": set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the "
            "environment (never in the config); the server's admin creates users "
            "(docs/how-to/clusters-and-team-server.md)"
        )
    if status == 403:
        raise ValueError(
            f"the tracking server {uri} refuses {given or 'these credentials'} (HTTP 403): ask its admin for READ and "
            "EDIT permission on the experiment (docs/how-to/clusters-and-team-server.md)"
        )


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an MLflow client error (its error code, or the status its message quotes)."""
    code = getattr(exc, "error_code", None)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return 401 if code == "UNAUTHENTICATED" else 403
    found = re.search(r"error code (\d{3})", str(exc))
    return int(found.group(1)) if found else None


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a tracking server that did not answer within the retries."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ServerUnreachable, requests.exceptions.ConnectionError, ConnectionRefusedError)):
            return True
        if "Max retries exceeded" in str(exc):  # MLflow re-raises the requests error as a MlflowException
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def note_unreachable(uri: str, exc: BaseException) -> bool:
    """Remember that ``uri`` did not answer when ``exc`` says so (see ``_DOWN``); returns whether it did."""
    if is_http(uri) and is_unreachable(exc):
        _DOWN.add(uri)
        return True
    return False
