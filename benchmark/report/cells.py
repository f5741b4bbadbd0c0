"""Cells and their paired statistics: which runs form one experiment over seeds, and each cell's deltas, intervals,
Holm-adjusted p-values and verdict.

A cell is one experiment over seeds: the runs sharing a ``cell_key`` tag (the run identity minus the seed; runs
recorded before that tag existed fall back to (source, target, strategy, label budget)); its seeds pair each transfer
run with the baseline run of the same ``baseline_key`` (same architecture, preprocessing, target, label subset, seed
and budget). The statistics and the verdict rule are documented in ``benchmark.stats``, metric directions in
``benchmark.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark import config_defaults, sequential
from benchmark import metrics as metric_schema
from benchmark.stats import BUDGET_LIMITED, INCONCLUSIVE, adjust, paired_summary

CELL = ["source", "target", "strategy", "label_budget"]
INCOMPLETE = "incomplete"
"""Marks a cell with failed or diverged seeds (a diverging transfer run is evidence, not noise to drop)."""


def budget_order(value: str) -> float:
    """Numeric sort key of a ``label_budget`` tag: "all" sorts last."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def cell_ids(runs: pd.DataFrame) -> pd.Series:
    """Each run's cell: its ``cell_key`` tag (the run identity minus the seed), or for runs recorded before that tag
    existed the (source, target, strategy, label budget) tags; NaN when a run carries neither (it cannot be placed).

    The ``cell_key`` keeps apart what the tags alone pool: sweeps over ``strategy.frozen_stages``, ``budget.epochs``,
    ``selection``, the preprocessing, or two checkpoints of ``source=local_file``.
    """
    legacy = pd.Series(math.nan, index=runs.index, dtype=object)
    cols = [f"tags.{c}" for c in CELL]
    if all(c in runs for c in cols):
        complete = runs[cols].notna().all(axis=1)
        legacy[complete] = "tags:" + runs.loc[complete, cols].astype(str).agg("|".join, axis=1)
    if "tags.cell_key" not in runs:
        return legacy
    return runs["tags.cell_key"].where(runs["tags.cell_key"].notna(), legacy)


def summarize(
    runs: pd.DataFrame,
    metric: str = config_defaults.METRIC,
    alpha: float = config_defaults.ALPHA,
    margin: float = config_defaults.MARGIN,
    n_boot: int = 10_000,
    against: str = "baseline",
    design: dict | None = None,
    at_cap: bool = config_defaults.AT_CAP,
) -> pd.DataFrame:
    """One row per cell with paired statistics, Holm-adjusted p-values and verdicts (see ``benchmark.stats``).

    Cells are ``cell_ids`` (the ``cell_key`` tag, else the tag tuple); ``variant`` (a tag) tells apart cells that
    share (source, target, strategy, label budget). Only FINISHED runs enter the statistics; within a cell, two
    FINISHED runs of the same seed are never both counted (the newest is kept; ``duplicates`` counts the others).
    FAILED/KILLED transfer runs (``load_runs(include_failed=True)``) of a seed with no FINISHED run are counted as
    ``failed`` or, when tagged ``diverged``, ``diverged``; a cell with any is ``incomplete``.

    ``against="baseline"`` pairs every transfer run with its baseline (``baseline_key``: scratch, or the random-init
    network of the unsupervised strategies); ``against="reference"`` pairs the runs that have a reference
    (``reference_key``: domain adaptation against ``source_only``) with it, as a separate family for Holm.
    A run tagged ``metric`` (clustering: ``test/nmi``) is compared on that metric instead of ``metric``; the
    ``metric`` column says which. ``delta`` is oriented by the metric's direction (``benchmark.metrics``):
    positive means transfer did better, on a loss as on an accuracy.

    Columns: the cell keys, ``variant``, ``cell``, ``metric``, ``n`` (paired seeds), ``unpaired`` (transfer runs
    whose baseline is missing: shown, never dropped), ``failed``, ``diverged``, ``duplicates``, ``incomplete``,
    ``transfer_mean``/``transfer_se``, ``scratch_mean``/``scratch_se`` (raw metric values), ``delta``, ``se``,
    ``ci_low``/``ci_high`` (unadjusted t), ``adj_low``/``adj_high`` (the interval the verdict used),
    ``boot_low``/``boot_high``, ``p`` (δ = 0, NaN at zero variance), ``p_direction``, ``p_equivalence``,
    ``p_wilcoxon``, ``p_holm`` (directional, adjusted), ``p_equivalence_holm``, ``zero_variance``, ``nt_gap`` (the
    negative-transfer gap of Wang et al., CVPR 2019: error(transfer) − error(scratch), positive = negative transfer;
    −delta), ``verdict``, ``seeds`` and ``run_ids``.

    ``design`` (an adaptive-seed sweep's ``benchmark.sequential.SequentialDesign`` as a dict): the verdicts against
    the baseline follow the group-sequential rule instead (``sequential_verdicts``): repeated p-values (Holm-adjusted)
    and repeated confidence intervals, valid although seeds were added only where the verdict was still open.

    ``budget_limited``: a paired run of either side reached its budget's cap still improving, or its probe's solver
    did not converge (the metric ``budget/capped``); such a cell's ``verdict`` is ``budget-limited`` unless
    ``at_cap`` (then the statistics' verdict stands, and ``verdict_at_cap`` holds it either way).
    ``transfer_steps``/``scratch_steps``: the mean optimiser steps each side reached (``budget/steps``; 0 for a
    solved probe), ``transfer_fit_s``/``scratch_fit_s`` their mean training seconds (``time/fit_s``).
    """
    if runs.empty or "tags.role" not in runs:
        return pd.DataFrame()
    if against not in ("baseline", "reference"):
        raise ValueError(f"against must be 'baseline' or 'reference', got {against!r}")
    metric_schema.get(metric)  # an unknown metric names the valid ones before any work
    pair_tag = f"tags.{against}_key"
    runs = runs.assign(status=runs.get("status", "FINISHED"))
    finished = runs[runs["status"] == "FINISHED"]
    transfer = runs[runs["tags.role"] == "transfer"]
    if pair_tag not in transfer:
        return pd.DataFrame()
    transfer = transfer[transfer[pair_tag].notna()] if against == "reference" else transfer
    transfer = transfer.assign(_cell=cell_ids(transfer))
    transfer = transfer[transfer["_cell"].notna()]
    partner_role = "baseline" if against == "baseline" else "transfer"
    partners = finished[finished["tags.role"] == partner_role].sort_values("start_time")
    baselines = partners.drop_duplicates("tags.run_key", keep="last").set_index("tags.run_key")
    rows, summaries = [], []
    for cell, group in transfer.groupby("_cell", sort=False):
        ok = group[group["status"] == "FINISHED"].sort_values("start_time")
        repeated = ok.duplicated("tags.seed", keep="last")
        ok = ok[~repeated].sort_values("tags.seed", key=lambda s: s.astype(int))
        lost = group[(group["status"] != "FINISHED") & ~group["tags.seed"].isin(ok["tags.seed"])]
        lost = lost.sort_values("start_time").drop_duplicates("tags.seed", keep="last")
        diverged = int((lost["tags.diverged"] == "true").sum()) if "tags.diverged" in lost else 0
        first = group.iloc[0]
        cell_metric = metric
        if "tags.metric" in group and group["tags.metric"].notna().any():
            cell_metric = str(group["tags.metric"].dropna().iloc[0])
        sign = metric_schema.sign(cell_metric)
        col = f"metrics.{cell_metric}"
        t_vals, b_vals, deltas, seeds = [], [], [], []
        steps: dict[str, list[float]] = {"transfer": [], "scratch": [], "transfer_fit": [], "scratch_fit": []}
        unpaired, capped = 0, False
        for _, run in ok.iterrows():
            value = run.get(col, math.nan)
            base = baselines.loc[run[pair_tag]] if run.get(pair_tag) in baselines.index else None
            t_vals.append(value)
            if base is None or pd.isna(base.get(col, math.nan)) or pd.isna(value):
                unpaired += 1
                continue
            for side, r in (("transfer", run), ("scratch", base)):
                capped |= r.get("metrics.budget/capped", 0.0) == 1.0
                steps[side].append(r.get("metrics.budget/steps", math.nan))
                steps[f"{side}_fit"].append(r.get("metrics.time/fit_s", math.nan))
            b_vals.append(float(base[col]))
            deltas.append(sign * (float(value) - float(base[col])))
            seeds.append(int(run["tags.seed"]))
        s = paired_summary(deltas, alpha=alpha, margin=margin, n_boot=n_boot)
        summaries.append(s)
        variant = first.get("tags.variant", "")
        rows.append(
            {
                **{c: first[f"tags.{c}"] for c in CELL},
                "variant": "" if pd.isna(variant) else str(variant),
                "tuned": first.get("tags.tuned") == "true",  # a tuning study chose its values (docs: tuning)
                "selection_oracle": first.get("tags.selection_oracle") == "true",
                "cell": cell,
                "metric": cell_metric,
                "n": s.n,
                "unpaired": unpaired,
                "failed": len(lost) - diverged,
                "diverged": diverged,
                "duplicates": int(repeated.sum()),
                "incomplete": len(lost) > 0,
                "transfer_mean": _mean(t_vals),
                "transfer_se": _se(t_vals),
                "scratch_mean": _mean(b_vals),
                "scratch_se": _se(b_vals),
                "budget_limited": bool(capped),
                "transfer_steps": _mean(steps["transfer"]),
                "scratch_steps": _mean(steps["scratch"]),
                "transfer_fit_s": _mean(steps["transfer_fit"]),
                "scratch_fit_s": _mean(steps["scratch_fit"]),
                "seeds": seeds,
                "deltas": deltas,
                "run_ids": ok["run_id"].tolist(),
                "lost_run_ids": lost["run_id"].tolist(),
            }
        )
    for row, s in zip(rows, adjust(summaries), strict=True):
        row.update(
            {
                "delta": s.mean, "se": s.se, "ci_low": s.ci_low, "ci_high": s.ci_high, "adj_low": s.adj_low,
                "adj_high": s.adj_high, "boot_low": s.boot_low, "boot_high": s.boot_high, "p": s.p_value,
                "p_direction": s.p_direction, "p_equivalence": s.p_equivalence, "p_wilcoxon": s.p_wilcoxon,
                "p_holm": s.p_adjusted, "p_equivalence_holm": s.p_equivalence_adjusted,
                "zero_variance": s.zero_variance, "nt_gap": -s.mean, "verdict": s.verdict,
            }
        )  # fmt: skip
    if design is not None and against == "baseline" and rows:
        sequential_verdicts(rows, design)
    for row in rows:
        row["verdict_at_cap"] = row["verdict"]
        if row["budget_limited"] and not at_cap:
            row["verdict"] = BUDGET_LIMITED
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["_b"] = df["label_budget"].map(budget_order)
    df = df.sort_values(["source", "target", "strategy", "variant", "_b"]).drop(columns="_b")
    return df.reset_index(drop=True)


def sequential_verdicts(rows: list[dict], design: dict) -> None:
    """Replace each row's verdict, Holm p-values and interval by the group-sequential rule's (``rows`` carry
    ``deltas``, oriented); the cells of one metric are one family, as in the sweep's rounds."""
    # a design recorded before the futility stop existed has no ``futility``: it had none (not today's default)
    plan = sequential.SequentialDesign(**{"futility": 0.0, **design})
    for metric in {r["metric"] for r in rows}:
        family = [r for r in rows if r["metric"] == metric]
        sign = metric_schema.sign(metric)
        decided = sequential.decide({i: [sign * d for d in r["deltas"]] for i, r in enumerate(family)}, plan, metric)
        for i, r in enumerate(family):
            c = decided[i]
            r.update(
                {
                    "verdict": INCONCLUSIVE if c.verdict == sequential.OPEN else c.verdict,
                    "adj_low": c.low, "adj_high": c.high, "p_direction": c.p_direction,
                    "p_holm": c.p_direction_adjusted, "p_equivalence": c.p_equivalence,
                    "p_equivalence_holm": c.p_equivalence_adjusted, "seeds_used": c.n_used, "rule": "sequential",
                    "futile": c.verdict == INCONCLUSIVE and c.n_used < plan.max_seeds,
                }
            )  # fmt: skip


def _mean(v: Sequence[float]) -> float:
    a = np.asarray([x for x in v if not pd.isna(x)], dtype=float)
    return float(a.mean()) if len(a) else math.nan


def _se(v: Sequence[float]) -> float:
    a = np.asarray([x for x in v if not pd.isna(x)], dtype=float)
    return float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


def family(cells: pd.DataFrame) -> int:
    """How many cells a table's Holm family holds: its cells with at least 2 paired seeds."""
    return int((cells["n"] >= 2).sum()) if len(cells) else 0


def by_variant(cells: pd.DataFrame, *keys: str):
    """``groupby`` over ``keys`` with the cell's ``variant`` after the first key: cells that differ only in their
    variant (frozen stages, epochs...) are different experiments and never share a panel, a line or a ranking."""
    cells = cells.assign(variant=cells.get("variant", ""))
    cols = [keys[0], "variant", *keys[1:]]
    return cells.groupby(cols)
