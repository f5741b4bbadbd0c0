"""Research comparisons from MLflow runs: cells, paired statistics, verdicts, tables, figures and efficiency.

``python -m benchmark.report`` writes a report for an experiment or a sweep (``cli``); each sweep writes the same report
to its parent run when it ends (``benchmark.sweep``). The modules, in the order the data flows:

* ``load``: MLflow runs as a table, one row per run;
* ``cells``: which runs form a cell, and each cell's paired statistics and verdict;
* ``efficiency``, ``scores``, ``provenance``: time to accuracy, whether scores predicted the deltas, pairs computed by
  different code;
* ``tables``, ``summary``, ``figures``: the same numbers as Markdown/LaTeX tables, ``report.md``'s prose and PNGs;
* ``build``: all of it written to a folder; ``cli``: the command line.

The package imports no torch, timm or Lightning (a test checks), so a report runs wherever MLflow's store can be read.
The names below are the API for notebooks and ``benchmark.sweep``.
"""

from benchmark.report.build import Report, build_report
from benchmark.report.cells import cell_ids, summarize
from benchmark.report.efficiency import efficiency, histories
from benchmark.report.load import load_runs, runs_frame
from benchmark.report.provenance import provenance_flags
from benchmark.report.scores import pair_scores_table, score_correlations
from benchmark.report.summary import family_note
from benchmark.report.tables import frame_markdown, latex_table, markdown_table, table_rows

__all__ = [
    "Report",
    "build_report",
    "cell_ids",
    "efficiency",
    "family_note",
    "frame_markdown",
    "histories",
    "latex_table",
    "load_runs",
    "markdown_table",
    "pair_scores_table",
    "provenance_flags",
    "runs_frame",
    "score_correlations",
    "summarize",
    "table_rows",
]
