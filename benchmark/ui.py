"""Open the MLflow UI where the answer is: every sweep's cells ranked by delta with their verdicts, and its table.

    python -m benchmark.ui                          # newest experiment holding a sweep, served on 127.0.0.1:5000
    python -m benchmark.ui --experiment quickstart --print-only

MLflow 3.17's UI opens an experiment on a GenAI overview (traces, token usage) unless the URL carries
``workflowType=machine_learning``: the sidebar's GenAI/Model training switch decides, stored in the browser, and the
``mlflow.experimentKind`` experiment tag no longer does. The runs table keeps its columns in the browser too; the
only state a link can carry is a saved view, an experiment tag ``mlflow.sharedViewState.<key>`` named by
``viewStateShareKey`` (what the UI's own "Views" menu writes). ``save_view`` writes one that filters to cell runs
(``role=cell``: one per cell and sweep, written when the sweep ends), sorts them by ``delta`` and shows the ``verdict``
tag next to the delta, the interval the verdict used, the seeds and the failed/diverged counts.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import Experiment
from mlflow.tracking import MlflowClient

from benchmark.tracking import resolve_uri

log = logging.getLogger(__name__)

VIEW_KEY = "transfer-verdicts"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "Transfer verdicts"
CELL_FILTER = "tags.role = 'cell'"
_COLUMNS = [
    "tags.`verdict`",
    "metrics.`delta`",  # oriented: positive = transfer better, on the cell's metric
    "metrics.`ci_low`",  # the interval the verdict used (Holm level)
    "metrics.`ci_high`",
    "metrics.`n`",
    "metrics.`failed`",
    "metrics.`diverged`",
    "tags.`incomplete`",
    "metrics.`transfer_steps`",  # steps each side reached (budget.mode=converged: a verdict "budget-limited" when
    "metrics.`baseline_steps`",  # a side stopped at its cap)
    "tags.`comparison`",  # baseline, or reference (domain adaptation vs source_only)
    "tags.`metric`",
    "tags.`sweep_id`",
]
VIEW_STATE = {  # the UI's own keys: search facets plus the runs table's column state (ag-grid column ids)
    "searchFilter": CELL_FILTER,
    "orderByKey": "metrics.`delta`",
    "orderByAsc": False,  # helpful transfers on top, negative transfer at the bottom
    "selectedColumns": _COLUMNS,
    "columnOrder": ["attributes.`Run Name`", *_COLUMNS, "runDateAndNestInfo", "duration"],
    "columnWidths": {"attributes.`Run Name`": 360},  # room for cell__source__target__strategy__n<labels>
}


def find_experiment(client: MlflowClient, name: str | None = None) -> Experiment:
    """Experiment ``name``; without a name, the one whose newest sweep (``role=sweep`` run) started last.

    Raises ValueError naming the available experiments when there is no such experiment.
    """
    experiments = client.search_experiments()  # active ones
    if name is not None:
        exp = client.get_experiment_by_name(name)
        exp = exp if exp is not None and exp.lifecycle_stage == "active" else None
    else:
        newest = _sweeps(client, [e.experiment_id for e in experiments], max_results=1) if experiments else []
        exp = client.get_experiment(newest[0].info.experiment_id) if newest else None
    if exp is None:
        what = f"no MLflow experiment {name!r}" if name is not None else "no experiment holds a sweep (role=sweep run)"
        raise ValueError(f"{what} in {client.tracking_uri}; experiments: {sorted(e.name for e in experiments)}")
    return exp


def save_view(client: MlflowClient, experiment_id: str) -> str:
    """Write (or refresh) the saved view ``Transfer verdicts`` on the experiment; returns its ``viewStateShareKey``.

    The value is the UI's saved-view envelope (``name``, ``createdAt``, ``updatedAt``, JSON ``state``), so the view
    also appears in the runs table's "Views" menu. Rewritten only when its state changed.
    """
    old = client.get_experiment(experiment_id).tags.get(VIEW_TAG)
    state = json.dumps(VIEW_STATE)
    try:
        if old is not None and json.loads(old).get("state") == state:
            return VIEW_KEY
    except (ValueError, AttributeError):
        pass  # an unreadable or legacy value is replaced
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": state}
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
    return VIEW_KEY


def urls(client: MlflowClient, experiment: Experiment, host: str = "127.0.0.1", port: int = 5000) -> dict[str, str]:
    """The UI pages that answer "which transfers help, which hurt", for a UI at ``host:port`` (``host`` may be a
    tracking server's base URL, ``http://server:5000``, which serves its own UI).

    ``runs``: the runs table; with the saved view (``save_view``) it lists the cell runs of every sweep by ``delta``
    with their ``verdict``, without it every run, each sweep's parent collapsing its jobs. ``all_runs``: every run.
    ``parent``: the newest sweep's parent run, whose description is the verdict table (absent without a sweep).
    ``filter``: a search filter to paste into the runs table for the same rows.
    """
    base = f"{_base_url(host, port)}/#/experiments/{experiment.experiment_id}"
    ml = "workflowType=machine_learning"  # open the Model training UI, not the GenAI overview
    fresh = client.get_experiment(experiment.experiment_id)  # tags as stored now, not as when `experiment` was read
    view = f"&viewStateShareKey={VIEW_KEY}" if VIEW_TAG in fresh.tags else ""
    out = {"runs": f"{base}/runs?{ml}{view}", "all_runs": f"{base}/runs?{ml}", "filter": CELL_FILTER}
    sweeps = _sweeps(client, [experiment.experiment_id], max_results=1)
    if sweeps:
        out["parent"] = f"{base}/runs/{sweeps[0].info.run_id}?{ml}"
        out["sweep_id"] = sweeps[0].data.tags.get("sweep_id", "")
    return out


def command(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line serving ``tracking_uri`` (this interpreter's MLflow)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
            "--port", str(port)]  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the UI on this machine (``mlflow ui`` has no authentication)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sweeps(client: MlflowClient, experiment_ids: list[str], max_results: int) -> list:
    return client.search_runs(
        experiment_ids,
        filter_string="tags.role = 'sweep'",
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
    )


def _base_url(host: str, port: int) -> str:
    if host.startswith(("http://", "https://")):  # a tracking server is its own UI
        return host.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def parser() -> argparse.ArgumentParser:
    """The command line (``docs/reference/commands.md`` prints its help)."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=None, help="experiment name (default: the newest with a sweep)")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--print-only", action="store_true", help="print the URLs, do not start the UI")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    try:
        uri = resolve_uri(args.tracking_uri, Path.cwd())
        client = MlflowClient(uri)
        exp = find_experiment(client, args.experiment)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    remote = uri.startswith(("http://", "https://"))
    save_view(client, exp.experiment_id)
    pages = urls(client, exp, uri if remote else args.host, args.port)

    print(f"MLflow experiment {exp.name!r} in {uri}")
    print(f"  Cells of every sweep, best delta first, with their verdicts:\n    {pages['runs']}")
    if "parent" in pages:
        print(f"  Latest sweep {pages['sweep_id']}, its verdict table in the description:\n    {pages['parent']}")
    else:
        print("  No sweep in this experiment yet.")
    print(f"  All runs (a sweep's row expands to its jobs):\n    {pages['all_runs']}")
    print(f"  By hand: filter with {pages['filter']} (and tags.verdict = 'negative'), add the columns")
    print("  delta and verdict from 'Columns'.")
    if remote:
        print("The tracking server serves this UI.")
        return 0
    cmd = command(uri, args.host, args.port)
    if args.print_only:
        again = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--print-only"]
        print(f"Start the UI: {shlex.join(['python', '-m', 'benchmark.ui', *again])}")
        return 0
    if not is_loopback(args.host):
        log.warning(
            "binding the MLflow UI to %s: anyone who can reach it can read and change runs (no authentication)",
            args.host,
        )
    print(f"starting the MLflow UI on {args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    sys.stderr.flush()
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
