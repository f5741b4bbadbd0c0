"""Recorded runs as a table, one row per run: an experiment's runs, or those of the sweeps named.

Reads MLflow only, so it works on any past sweep and on a store copied from another machine. A job recorded twice
under one ``run_key`` (a retry, a rerun) is one row; the statistics start from this table (``cells``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark.tracking import resolve_uri

log = logging.getLogger(__name__)


def load_runs(
    experiment: str | None = None,
    tracking_uri: str | None = None,
    sweep_ids: Sequence[str] | None = None,
    roles: Sequence[str] | None = ("baseline", "transfer"),
    client: MlflowClient | None = None,
    include_failed: bool = False,
) -> pd.DataFrame:
    """One row per FINISHED run (and FAILED/KILLED ones with ``include_failed``, which ``summarize`` counts per
    cell): ``run_id``, ``run_name``, ``status``, ``start_time``, then ``tags.*``, ``params.*`` and ``metrics.*``
    columns (MLflow's own naming), for a notebook or for ``summarize``.

    ``sweep_ids`` restricts to the runs each sweep used (trained or reused), read from the sweep's parent run
    (``runs.json``), falling back to the runs tagged with that ``sweep_id``. Runs with the same ``run_key`` are
    deduplicated (newest kept, a FINISHED one before any failed one). ``roles`` filters on the ``role`` tag (None
    keeps all, parent runs included).
    """
    client = client or MlflowClient(tracking_uri or default_uri())
    exp = client.get_experiment_by_name(experiment) if experiment else None
    if experiment and exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}; experiments: {names}")
    exp_ids = [exp.experiment_id] if exp else [e.experiment_id for e in client.search_experiments()]
    runs = _search(client, exp_ids, "attributes.status = 'FINISHED'")
    if include_failed:
        runs += _search(client, exp_ids, "attributes.status = 'FAILED'")
        runs += _search(client, exp_ids, "attributes.status = 'KILLED'")
    if sweep_ids:
        wanted: set[str] = set()
        for sweep_id in sweep_ids:
            wanted |= _sweep_run_ids(client, exp_ids, sweep_id)
        runs = [r for r in runs if r.info.run_id in wanted]
    df = runs_frame(runs)
    if df.empty:
        return df
    if roles is not None and "tags.role" in df:
        df = df[df["tags.role"].isin(roles)]
    if "tags.run_key" in df:
        df["_ok"] = df["status"] == "FINISHED"
        keyed = df[df["tags.run_key"].notna()].sort_values(["_ok", "start_time"])
        keyed = keyed.drop_duplicates("tags.run_key", keep="last")
        df = pd.concat([keyed, df[df["tags.run_key"].isna()]]).drop(columns="_ok")
    return df.sort_values("start_time").reset_index(drop=True)


def runs_frame(runs: Sequence) -> pd.DataFrame:
    """MLflow ``Run`` objects as one row each (``tags.*``, ``params.*``, ``metrics.*`` columns)."""
    rows = []
    for r in runs:
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
            "experiment_id": r.info.experiment_id,
        }
        row.update({f"tags.{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def default_uri() -> str:
    """The store a report reads when none is named: ``$MLFLOW_TRACKING_URI``, else ``<cwd>/mlflow.db`` (as a
    sweep writes it)."""
    return resolve_uri(None, Path.cwd())


def _search(client: MlflowClient, exp_ids: list[str], flt: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string=flt, max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _sweep_run_ids(client: MlflowClient, exp_ids: list[str], sweep_id: str) -> set[str]:
    parents = _search(client, exp_ids, f"tags.sweep_id = '{sweep_id}' and tags.role = 'sweep'")
    if not parents:
        raise ValueError(f"no sweep {sweep_id!r} (a parent run tagged role=sweep) in experiments {exp_ids}")
    ids = {r.info.run_id for r in _search(client, exp_ids, f"tags.sweep_id = '{sweep_id}'")}
    for parent in parents:
        try:  # MlflowClient has no load_dict (the old call always failed here and reused runs were missed)
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(parent.info.run_id, "runs.json", tmp)
                records = json.loads(Path(path).read_text())["jobs"]
        except Exception as exc:  # a sweep still running or killed before it wrote runs.json
            log.warning("sweep %s: no runs.json on parent run %s (%s)", sweep_id, parent.info.run_id, exc)
            continue
        for rec in records:
            ids |= {rec[k] for k in ("run_id", "baseline_run_id", "reference_run_id") if rec.get(k)}
    return ids
