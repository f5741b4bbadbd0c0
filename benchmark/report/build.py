"""The whole report: every table, figure and number of one set of runs written to a folder, with the Markdown summary
and the headline metrics a sweep logs on its parent run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark import config_defaults
from benchmark.report.cells import summarize
from benchmark.report.efficiency import efficiency, histories
from benchmark.report.figures import (
    data_efficiency,
    forest_plot,
    heatmaps,
    learning_curves,
    score_scatter,
    time_saved_plot,
)
from benchmark.report.provenance import provenance_flags
from benchmark.report.scores import pair_scores_table, score_correlations
from benchmark.report.summary import summary_markdown
from benchmark.report.tables import TABLE_COLUMNS, frame_markdown, latex_table, markdown_table, table_rows
from benchmark.report.tuning import tuning_table
from benchmark.stats import VERDICTS


@dataclass
class Report:
    """What ``build_report`` computed and wrote: ``cells`` (``summarize`` against the baseline), ``efficiency`` (time
    to accuracy per transfer run), the ``files`` written, ``report.md``'s text, the ``headline`` metrics a sweep logs
    on its parent run, and ``reference_cells`` (adaptation against its reference; empty when no run has one)."""

    cells: pd.DataFrame
    efficiency: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    headline: dict[str, float] = field(default_factory=dict)
    reference_cells: pd.DataFrame = field(default_factory=pd.DataFrame)


def build_report(
    runs: pd.DataFrame,
    out: Path,
    client: MlflowClient,
    metric: str = config_defaults.METRIC,
    alpha: float = config_defaults.ALPHA,
    margin: float = config_defaults.MARGIN,
    title: str = "Transfer versus scratch",
    n_boot: int = 10_000,
    design: dict | None = None,
    at_cap: bool = config_defaults.AT_CAP,
) -> Report:
    """Tables (Markdown, CSV, LaTeX), figures (PNG) and efficiency numbers for ``runs`` into ``out``.

    ``runs`` may hold FAILED/KILLED runs (``load_runs(include_failed=True)``): the cells count them, everything else
    reads FINISHED runs only.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = summarize(runs, metric, alpha, margin, n_boot, design=design, at_cap=at_cap)
    if "status" in runs:
        runs = runs[runs["status"] == "FINISHED"]
    rows = table_rows(cells, metric)
    files = []
    md = markdown_table(rows)
    (out / "verdicts.md").write_text(md + "\n")
    pd.DataFrame(rows, columns=list(rows[0]) if rows else TABLE_COLUMNS).to_csv(out / "verdicts.csv", index=False)
    ref_cells = summarize(runs, metric, alpha, margin, n_boot, against="reference", at_cap=at_cap)
    ref_md = None
    if not ref_cells.empty:
        reference = str(runs["tags.reference_strategy"].dropna().iloc[0])
        ref_rows = table_rows(ref_cells, metric, reference=reference)
        ref_md = markdown_table(ref_rows)
        (out / "verdicts_vs_reference.md").write_text(ref_md + "\n")
        pd.DataFrame(ref_rows).to_csv(out / "verdicts_vs_reference.csv", index=False)
        ref_cells.drop(columns=["run_ids", "lost_run_ids"]).to_csv(out / "cells_vs_reference.csv", index=False)
        files += [out / "verdicts_vs_reference.md", out / "verdicts_vs_reference.csv"]
    if not cells.empty:
        cells.drop(columns=["run_ids", "lost_run_ids"]).to_csv(out / "cells.csv", index=False)
    (out / "verdicts.tex").write_text(latex_table(rows, title))
    files += [out / "verdicts.md", out / "verdicts.csv", out / "verdicts.tex"]
    eff = pd.DataFrame()
    scores = corr = pd.DataFrame()
    headline: dict[str, float] = {}
    if not cells.empty:
        curves = histories(client, runs["run_id"].tolist(), ["val/acc", "time/elapsed_s", "train/steps"])
        eff = efficiency(runs, curves)
        files += heatmaps(cells, out, metric)
        files.append(forest_plot(cells, out, metric, margin))
        files.append(learning_curves(cells, runs, curves, out))
        de_path, crossovers = data_efficiency(cells, out, metric)
        if de_path is not None:
            files.append(de_path)
            crossovers.to_csv(out / "crossovers.csv", index=False)
        scores = pair_scores_table(runs)
        corr = score_correlations(cells, scores)
        if not scores.empty:
            scores.to_csv(out / "scores.csv", index=False)
            files.append(out / "scores.csv")
            scatter = score_scatter(cells, scores, out)
            if scatter is not None:
                files.append(scatter)
        if not corr.empty:
            corr.to_csv(out / "score_correlations.csv", index=False)
            files.append(out / "score_correlations.csv")
        if not eff.empty:
            eff.to_csv(out / "efficiency.csv", index=False)
            files.append(out / "efficiency.csv")
            ts = time_saved_plot(eff, out)
            if ts is not None:
                files.append(ts)
        for v in VERDICTS:
            headline[f"report/cells_{v.replace(' ', '_')}"] = float((cells["verdict"] == v).sum())
        headline["report/cells_incomplete"] = float(cells["incomplete"].sum())
        if not eff.empty:
            headline["report/reached_baseline_frac"] = float(eff["reached"].mean())
            if eff["reached"].any():
                headline["report/time_saved_median"] = float(eff.loc[eff["reached"], "saved_time"].median())
                headline["report/steps_saved_median"] = float(eff.loc[eff["reached"], "saved_steps"].median())
    if ref_md is not None:
        for v in VERDICTS:
            headline[f"report/reference_cells_{v.replace(' ', '_')}"] = float((ref_cells["verdict"] == v).sum())
    markdown = summary_markdown(title, md, eff, metric, alpha, margin, scores, corr, ref_md, cells, ref_cells)
    tuned = tuning_table(cells, runs)
    if not tuned.empty:
        tuned.to_csv(out / "tuning.csv", index=False)
        files.append(out / "tuning.csv")
        markdown += (
            "\n## Tuned versus default recipe\n\nEach tuned cell beside the default-recipe cell of the same settings"
            " (— when this experiment has none): both verdicts, the values each side's study chose and its cost"
            " (trials, seconds). `(oracle)` marks selection on the target's labels (`tuning.select=oracle`).\n\n"
            + frame_markdown(tuned)
            + "\n"
        )
    flags = provenance_flags(runs)
    headline["report/pairs_provenance_mismatch"] = float(len(flags))
    if not flags.empty:
        flags.to_csv(out / "provenance.csv", index=False)
        files.append(out / "provenance.csv")
        markdown += (
            f"\n## Pairs computed by different code\n\n{len(flags)} transfer run(s) and their baselines ran different"
            " code or library versions (reused runs from another commit or environment); their deltas mix a change"
            " of code with transfer. Re-run them with `rerun=all` to compare like with like.\n\n"
            + frame_markdown(flags)
            + "\n"
        )
    (out / "report.md").write_text(markdown)
    files.append(out / "report.md")
    (out / "headline.json").write_text(json.dumps(headline, indent=1))
    return Report(cells, eff, files, markdown, headline, ref_cells)
