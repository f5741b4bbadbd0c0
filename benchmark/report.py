"""From MLflow runs to cells, paired statistics, verdicts and tables.

Reads recorded runs only, so it works on any past sweep and on a store copied from another machine.
A cell is (source, target, strategy, label budget); its seeds pair each transfer run with the scratch run of the
same ``baseline_key`` (same architecture, preprocessing, target, label subset, seed and budget).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from mlflow.entities import Run

from benchmark.stats import PairedSummary, paired_summary

CELL_TAGS = ("source", "target", "strategy", "label_budget")


@dataclass
class Cell:
    source: str
    target: str
    strategy: str
    label_budget: str
    transfer: list[float]
    baseline: list[float]
    deltas: list[float]
    run_ids: list[str]
    missing_baselines: int
    summary: PairedSummary

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source, self.target, self.strategy, self.label_budget)


def summarize_cells(
    transfer_runs: list[Run],
    baseline_runs: dict[str, Run],
    metric: str = "test/acc",
    alpha: float = 0.05,
    margin: float = 0.0,
) -> list[Cell]:
    """Group transfer runs into cells and pair each with its baseline (``baseline_runs`` maps run key -> run).

    A transfer run whose baseline is absent counts in ``missing_baselines`` and contributes no delta: it is shown,
    never silently dropped.
    """
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in transfer_runs:
        groups[tuple(run.data.tags.get(t, "?") for t in CELL_TAGS)].append(run)
    cells = []
    for key, runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: int(r.data.tags.get("seed", 0)))
        transfer, baseline, deltas, missing = [], [], [], 0
        for run in runs:
            value = run.data.metrics.get(metric, math.nan)
            transfer.append(value)
            base = baseline_runs.get(run.data.tags.get("baseline_key", ""))
            if base is None or metric not in base.data.metrics:
                missing += 1
                continue
            baseline.append(base.data.metrics[metric])
            deltas.append(value - base.data.metrics[metric])
        cells.append(
            Cell(
                *key,
                transfer,
                baseline,
                deltas,
                [r.info.run_id for r in runs],
                missing,
                paired_summary(deltas, alpha=alpha, margin=margin),
            )
        )
    return cells


def _pm(values: list[float]) -> str:
    import numpy as np

    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return "missing"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1) / math.sqrt(len(v)):.3f}"


def verdict_rows(cells: list[Cell]) -> list[dict[str, str]]:
    rows = []
    for c in cells:
        s = c.summary
        ci = "—" if math.isnan(s.ci_low) else f"[{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
        rows.append(
            {
                "source": c.source,
                "target": c.target,
                "strategy": c.strategy,
                "labels/class": c.label_budget,
                "seeds": str(s.n) + (f" (+{c.missing_baselines} unpaired)" if c.missing_baselines else ""),
                "transfer": _pm(c.transfer),
                "scratch": _pm(c.baseline),
                "delta": "—" if math.isnan(s.mean) else f"{s.mean:+.3f}",
                "95% CI": ci,
                "p": "—" if math.isnan(s.p_value) else f"{s.p_value:.3g}",
                "verdict": s.verdict,
            }
        )
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no transfer cells)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    line = lambda vals: "| " + " | ".join(v.ljust(widths[c]) for c, v in zip(cols, vals, strict=True)) + " |"  # noqa: E731
    out = [line(cols), "|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|"]
    out += [line([r[c] for c in cols]) for r in rows]
    return "\n".join(out)
