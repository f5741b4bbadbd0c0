"""Research comparisons from MLflow runs: cells, paired statistics, verdicts, tables, figures and efficiency.

Reads recorded runs only, so it works on any past sweep and on a store copied from another machine:

    python -m benchmark.report --experiment quickstart --out reports/quickstart
    python -m benchmark.report --experiment quickstart --sweep 20261129-015016-764c --tracking-uri sqlite:////abs/mlflow.db

The same report is written to each sweep's parent run at the end of the sweep (``benchmark.sweep``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmark import config_defaults
from benchmark.report.build import build_report
from benchmark.report.load import default_uri, load_runs
from benchmark.report.page import sweeps_of, write_page


def parser() -> argparse.ArgumentParser:
    """The command line: its verdict rule's defaults are a sweep's (``conf/config.yaml``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="MLflow experiment name (e.g. quickstart)")
    parser.add_argument("--sweep", nargs="+", default=None, help="restrict to these sweep ids (parent runs' sweep_id)")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db"
    )
    parser.add_argument("--out", default=None, help="output folder (default reports/<experiment>)")
    parser.add_argument("--page", type=Path, default=None,
                        help="also write a results page of the docs (e.g. docs/results/quickstart.md), its figures "
                        "beside it, headed by the sweeps' commands, commits, host and dates")  # fmt: skip
    parser.add_argument("--title", default=None, help="the page's and tables' title")
    parser.add_argument("--metric", default=config_defaults.METRIC, help="paired metric (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=config_defaults.ALPHA, help="default: %(default)s")
    parser.add_argument("--margin", type=float, default=config_defaults.MARGIN,
                        help="practical margin in metric units (default: %(default)s)")  # fmt: skip
    parser.add_argument("--at-cap", action=argparse.BooleanOptionalAction, default=config_defaults.AT_CAP,
                        help="budget-limited cells (a side stopped at its cap) keep their verdict")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report of ``--experiment`` (or of the ``--sweep`` ids) and print it; 1 when there is no run to read."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    client = MlflowClient(args.tracking_uri or default_uri())
    runs = load_runs(args.experiment, sweep_ids=args.sweep, client=client, include_failed=True)
    if runs.empty:
        print(f"no FINISHED runs in experiment {args.experiment!r} ({client.tracking_uri})")
        return 1
    out = Path(args.out or Path("reports") / args.experiment)
    title = args.title or f"{args.experiment}: transfer versus scratch"
    report = build_report(runs, out, client, args.metric, args.alpha, args.margin, title=title,
                          at_cap=args.at_cap)  # fmt: skip
    print(report.markdown)
    if args.page is not None:
        page = write_page(report, args.page, title, sweeps_of(client, args.experiment, args.sweep))
        print(f"wrote the results page {page}")
    print(f"wrote {len(report.files)} files to {out.resolve()}{os.sep}")
    for f in report.files:
        print(f"  {f.name}")
    return 0
