"""Research comparisons from MLflow runs: cells, paired statistics, verdicts, tables, figures and efficiency.

Reads recorded runs only, so it works on any past sweep and on a store copied from another machine:

    python -m benchmark.report --experiment quickstart --out reports/quickstart
    python -m benchmark.report --experiment quickstart --sweep 20261129-015016-764c --tracking-uri sqlite:////abs/mlflow.db

A cell is one experiment over seeds: the runs sharing a ``cell_key`` tag (the run identity minus the seed; runs
recorded before that tag existed fall back to (source, target, strategy, label budget)); its seeds pair each transfer
run with the baseline run of the same ``baseline_key`` (same architecture, preprocessing, target, label subset, seed
and budget). The statistics and the verdict rule are documented in ``benchmark.stats``, metric directions in
``benchmark.metrics``. The same report is written to each sweep's parent run at the end
of the sweep (``report/`` artifacts, headline metrics, the verdict table as the run description).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark import metrics as metric_schema
from benchmark.provenance import provenance_mismatch
from benchmark.stats import EQUIVALENT, INCONCLUSIVE, INSUFFICIENT, NEGATIVE, POSITIVE, VERDICTS, adjust, paired_summary

log = logging.getLogger(__name__)

CELL = ["source", "target", "strategy", "label_budget"]
CI_COLUMN, P_COLUMN = "CI (Holm level)", "p (Holm)"
TABLE_COLUMNS = [
    "source", "target", "strategy", "labels/class", "seeds", "failed", "diverged", "transfer", "scratch", "delta",
    CI_COLUMN, P_COLUMN, "verdict",
]  # fmt: skip
INCOMPLETE = "incomplete"
"""Marks a cell with failed or diverged seeds (a diverging transfer run is evidence, not noise to drop)."""


# ----------------------------------------------------------------------------------------------------------------
# Loading


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
    client = client or MlflowClient(tracking_uri or _default_uri())
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


def _default_uri() -> str:
    from benchmark.tracking import resolve_uri

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


# ----------------------------------------------------------------------------------------------------------------
# Cells and statistics


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
    metric: str = "test/acc",
    alpha: float = 0.05,
    margin: float = 0.01,
    n_boot: int = 10_000,
    against: str = "baseline",
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
        unpaired = 0
        for _, run in ok.iterrows():
            value = run.get(col, math.nan)
            base = baselines.loc[run[pair_tag]] if run.get(pair_tag) in baselines.index else None
            t_vals.append(value)
            if base is None or pd.isna(base.get(col, math.nan)) or pd.isna(value):
                unpaired += 1
                continue
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
                "seeds": seeds,
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
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["_b"] = df["label_budget"].map(budget_order)
    df = df.sort_values(["source", "target", "strategy", "variant", "_b"]).drop(columns="_b")
    return df.reset_index(drop=True)


def _mean(v: Sequence[float]) -> float:
    a = np.asarray([x for x in v if not pd.isna(x)], dtype=float)
    return float(a.mean()) if len(a) else math.nan


def _se(v: Sequence[float]) -> float:
    a = np.asarray([x for x in v if not pd.isna(x)], dtype=float)
    return float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


# ----------------------------------------------------------------------------------------------------------------
# Tables


def _pm(mean: float, se: float) -> str:
    if pd.isna(mean):
        return "missing"
    return f"{mean:.3f}" if pd.isna(se) else f"{mean:.3f} ± {se:.3f}"


def family(cells: pd.DataFrame) -> int:
    """How many cells a table's Holm family holds: its cells with at least 2 paired seeds."""
    return int((cells["n"] >= 2).sum()) if len(cells) else 0


def _p(value: float, zero_variance: bool) -> str:
    if zero_variance:
        return "n/a"
    return "—" if pd.isna(value) else f"{value:.2g}"


def verdict_text(c) -> str:
    """A cell's verdict as shown: marked ``incomplete`` when seeds failed or diverged."""
    return f"{c.verdict} ({INCOMPLETE})" if c.incomplete else c.verdict


def table_rows(cells: pd.DataFrame, metric: str | None = None, reference: str = "scratch") -> list[dict[str, str]]:
    """Display rows of ``summarize``'s cells; a ``variant`` column appears when some cell has one, a ``metric``
    column when some cell is not on ``metric``; ``reference`` names the compared column (``scratch``, or
    ``source_only`` for the reference table). The interval is the one the verdict used (``adj_low``/``adj_high``);
    the p-value is the adjusted p of the test behind the verdict (equivalence for ``equivalent``, else directional).
    """
    rows = []
    show_metric = "metric" in cells and (cells["metric"] != (metric or "test/acc")).any()
    show_variant = "variant" in cells and (cells["variant"] != "").any()
    for _, c in cells.iterrows():
        ci = "—" if pd.isna(c.adj_low) else f"[{c.adj_low:+.3f}, {c.adj_high:+.3f}]"
        p = c.p_equivalence_holm if c.verdict == EQUIVALENT else c.p_holm
        rows.append(
            {
                "source": c.source,
                "target": c.target,
                "strategy": c.strategy,
                **({"variant": c.variant or "—"} if show_variant else {}),
                "labels/class": c.label_budget,
                **({"metric": c.metric} if show_metric else {}),
                "seeds": str(c.n) + (f" (+{c.unpaired} unpaired)" if c.unpaired else ""),
                "failed": str(c.failed),
                "diverged": str(c.diverged),
                "transfer": _pm(c.transfer_mean, c.transfer_se),
                reference: _pm(c.scratch_mean, c.scratch_se),
                "delta": "—" if pd.isna(c.delta) else f"{c.delta:+.3f}",
                CI_COLUMN: ci,
                P_COLUMN: _p(p, c.zero_variance),
                "verdict": verdict_text(c),
            }
        )
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no transfer cells)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}

    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.ljust(widths[c]) for c, v in zip(cols, vals, strict=True)) + " |"

    out = [line(cols), "|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|"]
    return "\n".join(out + [line([r[c] for c in cols]) for r in rows])


def latex_table(rows: list[dict[str, str]], caption: str = "Transfer versus scratch") -> str:
    """A booktabs table (``\\usepackage{booktabs}``); verdicts in bold when positive, negative or equivalent."""

    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
            text = text.replace(a, b)
        return text.replace("±", r"$\pm$").replace("—", "--")

    if not rows:
        return "% no transfer cells\n"
    cols = list(rows[0])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{esc(caption)}}}",
        r"\begin{tabular}{" + "lll" + "r" * (len(cols) - 4) + "l}",
        r"\toprule",
        " & ".join(esc(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    for r in rows:
        cells = [esc(r[c]) for c in cols]
        if r["verdict"].split(" (")[0] in (POSITIVE, NEGATIVE, EQUIVALENT):
            cells[-1] = rf"\textbf{{{cells[-1]}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Curves and efficiency


def histories(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]) -> pd.DataFrame:
    """Long table ``run_id, key, step, value`` of per-epoch metrics."""
    rows = []
    for run_id in run_ids:
        for key in keys:
            for m in client.get_metric_history(run_id, key):
                rows.append((run_id, key, m.step, m.value))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def efficiency(runs: pd.DataFrame, curves: pd.DataFrame, monitor: str = "val/acc") -> pd.DataFrame:
    """Time-to-accuracy per transfer run: the first epoch whose ``monitor`` reaches its scratch baseline's final
    value, in optimiser steps and seconds, and the share of the baseline's steps and fit time that saves.

    ``saved_time`` = 1 − seconds_to_target / baseline fit seconds (the seed article claims 60-80 %); NaN with
    ``reached`` False when the transfer run never reaches the baseline.
    """
    if runs.empty or curves.empty:
        return pd.DataFrame()
    by_run = {rid: g.pivot_table(index="step", columns="key", values="value") for rid, g in curves.groupby("run_id")}
    baselines = runs[runs["tags.role"] == "baseline"].set_index("tags.run_key")
    rows = []
    for _, run in runs[runs["tags.role"] == "transfer"].iterrows():
        key = run.get("tags.baseline_key")
        if key not in baselines.index:
            continue
        base = baselines.loc[key]
        own, theirs = by_run.get(run["run_id"]), by_run.get(base["run_id"])
        if own is None or theirs is None or monitor not in own or monitor not in theirs:
            continue
        target = theirs[monitor].dropna().iloc[-1]
        base_s = float(base.get("metrics.time/fit_s", math.nan))
        base_steps = float(base.get("metrics.train/total_steps", math.nan))
        hit = own[own[monitor] >= target - 1e-9]
        reached = not hit.empty
        step = hit.index[0] if reached else None
        seconds = float(hit["time/elapsed_s"].iloc[0]) if reached and "time/elapsed_s" in hit else math.nan
        steps = float(hit["train/steps"].iloc[0]) if reached and "train/steps" in hit else math.nan
        rows.append(
            {
                **{c: run[f"tags.{c}"] for c in CELL},
                "seed": int(run["tags.seed"]),
                "target_value": float(target),
                "reached": reached,
                "epoch_to_target": step,
                "steps_to_target": steps,
                "seconds_to_target": seconds,
                "baseline_steps": base_steps,
                "baseline_fit_s": base_s,
                "transfer_fit_s": float(run.get("metrics.time/fit_s", math.nan)),
                "saved_steps": 1 - steps / base_steps if reached else math.nan,
                "saved_time": 1 - seconds / base_s if reached else math.nan,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


VERDICT_COLOURS = {
    POSITIVE: "#1a9850",
    NEGATIVE: "#d73027",
    EQUIVALENT: "#4575b4",
    INCONCLUSIVE: "#7f7f7f",
    INSUFFICIENT: "#bbbbbb",
}


def _by_variant(cells: pd.DataFrame, *keys: str):
    """``groupby`` over ``keys`` with the cell's ``variant`` after the first key: cells that differ only in their
    variant (frozen stages, epochs...) are different experiments and never share a panel, a line or a ranking."""
    cells = cells.assign(variant=cells.get("variant", ""))
    cols = [keys[0], "variant", *keys[1:]]
    return cells.groupby(cols)


SLUG_MAX = 80
"""Longest variant part of a figure's file name; a longer variant (many settings, a long path) is cut and suffixed
with a digest of the whole, so names stay unique and within the file system's 255-byte limit."""


def _slug(variant: str) -> str:
    if not variant:
        return ""
    slug = "".join(ch if ch.isalnum() or ch in "=.-" else "_" for ch in variant)
    if len(slug) > SLUG_MAX:
        slug = f"{slug[:SLUG_MAX]}-{hashlib.sha256(variant.encode()).hexdigest()[:8]}"
    return "__" + slug


def heatmaps(cells: pd.DataFrame, out: Path, metric: str) -> list[Path]:
    """Source × target mean-delta heatmap per strategy and variant (one panel per label budget), diverging around 0;
    cells with a negative verdict are outlined and marked."""
    plt = _plt()
    from matplotlib.colors import TwoSlopeNorm

    files = []
    lim = max(float(np.nanmax(np.abs(cells["delta"].to_numpy(dtype=float)))), 1e-3) if len(cells) else 1.0
    for (strategy, variant), sc in _by_variant(cells, "strategy"):
        budgets = sorted(sc["label_budget"].unique(), key=budget_order)
        sources, targets = sorted(sc["source"].unique()), sorted(sc["target"].unique())
        fig, axes = plt.subplots(
            1,
            len(budgets),
            figsize=(2.2 + 1.4 * len(targets) * len(budgets), 1.4 + 0.6 * len(sources)),
            squeeze=False,
            sharey=True,
        )
        for k, (ax, budget) in enumerate(zip(axes[0], budgets, strict=True)):
            grid = np.full((len(sources), len(targets)), np.nan)
            for _, c in sc[sc["label_budget"] == budget].iterrows():
                i, j = sources.index(c.source), targets.index(c.target)
                grid[i, j] = c.delta
                if c.verdict == NEGATIVE:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2.5))
                mark = {POSITIVE: " (+)", NEGATIVE: " (−)"}.get(c.verdict, "")
                colour = "white" if abs(c.delta) > 0.6 * lim else "black"
                ax.text(j, i, f"{c.delta:+.3f}{mark}", ha="center", va="center", fontsize=8, color=colour)
            im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -lim, lim))
            ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
            if k == 0:
                ax.set_yticks(range(len(sources)), sources)
            ax.set_title(f"{budget} labels/class", fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), label=f"Δ {metric} (> 0: transfer better)")
        name = f"{strategy} ({variant})" if variant else strategy
        fig.suptitle(f"{name}: mean delta over seeds; (+)/(−) = verdict, outlined = negative", fontsize=10, y=1.06)
        path = out / f"heatmap_{strategy}{_slug(variant)}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files


def forest_plot(cells: pd.DataFrame, out: Path, metric: str, margin: float) -> Path:
    """Every cell's mean delta with the interval its verdict used (Holm level), coloured by verdict."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.32 * max(len(cells), 1)))
    labels = []
    for i, (_, c) in enumerate(cells.iloc[::-1].iterrows()):
        colour = VERDICT_COLOURS.get(c.verdict, "black")
        if not pd.isna(c.adj_low):
            ax.plot([c.adj_low, c.adj_high], [i, i], color=colour, lw=2)
        ax.plot([c.delta], [i], "o", color=colour)
        variant = f" · {c.variant}" if c.get("variant") else ""
        mark = f", {INCOMPLETE}" if c.get("incomplete") else ""
        labels.append(f"{c.source} → {c.target} · {c.strategy}{variant} · {c.label_budget}/class (n={c.n}{mark})")
    ax.axvline(0, color="black", lw=0.8)
    for m in (-margin, margin):
        if margin:
            ax.axvline(m, color="grey", lw=0.8, ls=":")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel(f"Δ {metric} (> 0: transfer better), interval at each cell's Holm level")
    handles = [plt.Line2D([], [], color=c, marker="o", label=v) for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="best")
    path = out / "forest.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(
    cells: pd.DataFrame, runs: pd.DataFrame, curves: pd.DataFrame, out: Path, max_cells: int = 8
) -> Path:
    """Mean val/acc of transfer runs and their baselines against epoch and against wall time, per cell."""
    plt = _plt()
    shown = cells.head(max_cells)
    fig, axes = plt.subplots(len(shown), 2, figsize=(9, 2.2 * max(len(shown), 1)), squeeze=False)
    by_id = runs.set_index("run_id")
    base_by_key = runs[runs["tags.role"] == "baseline"].set_index("tags.run_key")["run_id"].to_dict()
    for row, (_, c) in zip(axes, shown.iterrows(), strict=False):
        pairs = {"transfer": list(c.run_ids), "scratch": []}
        for rid in c.run_ids:
            key = by_id.loc[rid].get("tags.baseline_key")
            if key in base_by_key:
                pairs["scratch"].append(base_by_key[key])
        for name, ids, colour in (("transfer", pairs["transfer"], "C0"), ("scratch", pairs["scratch"], "C1")):
            sub = curves[curves["run_id"].isin(ids)]
            wide = sub.pivot_table(index=["run_id", "step"], columns="key", values="value").reset_index()
            if "val/acc" not in wide:
                continue
            wide = wide.dropna(subset=["val/acc"])
            mean = wide.groupby("step")[["val/acc", "time/elapsed_s"]].mean()
            row[0].plot(mean.index, mean["val/acc"], color=colour, label=name)
            row[1].plot(mean["time/elapsed_s"], mean["val/acc"], color=colour, label=name)
        row[0].set_title(f"{c.source} → {c.target} · {c.strategy} · {c.label_budget}/class", fontsize=8)
        row[0].set_xlabel("epoch", fontsize=8)
        row[1].set_xlabel("wall time (s)", fontsize=8)
        row[0].set_ylabel("val/acc", fontsize=8)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def data_efficiency(cells: pd.DataFrame, out: Path, metric: str) -> tuple[Path | None, pd.DataFrame]:
    """Metric against label budget for each strategy and scratch, per (source, target), with the crossover (the
    smallest budget above a helping one where the mean delta is ≤ 0: transfer stops helping) marked."""
    plt = _plt()
    groups = [(k, g) for k, g in cells.groupby(["source", "target"]) if g["label_budget"].nunique() >= 2]
    crossovers = []
    if not groups:
        return None, pd.DataFrame(columns=["source", "target", "strategy", "crossover"])
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, ((source, target), g) in zip(axes[0], groups, strict=True):
        budgets = sorted(g["label_budget"].unique(), key=budget_order)
        x = {b: i for i, b in enumerate(budgets)}
        scratch = g.groupby("label_budget")[["scratch_mean", "scratch_se"]].first().reindex(budgets)
        ax.errorbar(range(len(budgets)), scratch["scratch_mean"], yerr=scratch["scratch_se"], color="black", ls="--",
                    marker="s", label="scratch", capsize=2)  # fmt: skip
        for i, ((strategy, variant), sg) in enumerate(_by_variant(g, "strategy")):
            sg = sg.set_index("label_budget").reindex(budgets)
            ax.errorbar(range(len(budgets)), sg["transfer_mean"], yerr=sg["transfer_se"], marker="o", capsize=2,
                        color=f"C{i}", label=f"{strategy} ({variant})" if variant else strategy)  # fmt: skip
            helped, cross = False, None
            for b in budgets:
                d = sg.loc[b, "delta"]
                if pd.isna(d):
                    continue
                if d > 0:
                    helped = True
                elif helped:
                    cross = b
                    break
            crossovers.append({"source": source, "target": target, "strategy": strategy, "variant": variant,
                               "crossover": cross})  # fmt: skip
            if cross is not None:
                ax.axvline(x[cross], color=f"C{i}", ls=":", lw=1.2)
                ax.annotate(f"{strategy} stops helping", (x[cross], ax.get_ylim()[0]), fontsize=7, color=f"C{i}",
                            rotation=90, va="bottom", ha="right")  # fmt: skip
        ax.set_xticks(range(len(budgets)), budgets)
        ax.set_xlabel("labelled examples per class")
        ax.set_ylabel(metric)
        ax.set_title(f"{source} → {target}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "data_efficiency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path, pd.DataFrame(crossovers)


def time_saved_plot(eff: pd.DataFrame, out: Path) -> Path | None:
    """Distribution of the training time saved against scratch (runs that reached the baseline's accuracy)."""
    plt = _plt()
    reached = eff[eff["reached"]] if len(eff) else eff
    if reached.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(100 * reached["saved_time"], bins=20, color="C2", edgecolor="white")
    ax.axvspan(60, 80, color="grey", alpha=0.2, label="claimed 60–80 %")
    ax.axvline(100 * reached["saved_time"].median(), color="black", ls="--", label="median")
    ax.set_xlabel("training time saved vs scratch to reach its final val/acc (%)")
    ax.set_ylabel("transfer runs")
    ax.set_title(f"{len(reached)} of {len(eff)} transfer runs reached their baseline", fontsize=9)
    ax.legend(fontsize=7)
    path = out / "time_saved.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Does a score predict the realised delta?

SCORE_PREFIXES = ("transfer/", "similarity/")


def pair_scores_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, target) pair with its transferability and similarity scores (logged on transfer runs)."""
    cols = [c for c in runs.columns if c.startswith(tuple(f"metrics.{p}" for p in SCORE_PREFIXES))]
    transfer = runs[runs.get("tags.role") == "transfer"] if "tags.role" in runs else runs.iloc[0:0]
    if not cols or transfer.empty:
        return pd.DataFrame()
    table = transfer.groupby(["tags.source", "tags.target"])[cols].mean().reset_index()
    return table.rename(columns=lambda c: c.removeprefix("tags.").removeprefix("metrics."))


def score_correlations(cells: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and label budget: Kendall's tau and weighted tau between each score and the mean delta over
    the cells' (source, target) pairs. Scores are oriented by ``benchmark.metrics`` so that a positive tau means
    "ranked the pairs right" (distances are negated: a smaller distance should mean a larger delta). ``min_p`` is the
    smallest two-sided p-value Kendall's exact test can reach with that many pairs (2/n!): below 5 pairs it exceeds
    0.05, so ``note`` says the tau cannot reach significance."""
    from scipy import stats

    if cells.empty or scores.empty:
        return pd.DataFrame()
    merged = cells.merge(scores, on=["source", "target"], how="inner")
    rows = []
    for (strategy, variant, budget), g in _by_variant(merged, "strategy", "label_budget"):
        for score in metric_schema.SCORES:
            if score not in g:
                continue
            sign = metric_schema.sign(score)
            sub = g[["delta", score]].dropna()
            n = len(sub)
            tau = p = wtau = math.nan
            if n >= 3 and sub[score].nunique() > 1 and sub["delta"].nunique() > 1:
                tau, p = stats.kendalltau(sign * sub[score], sub["delta"])
                wtau = stats.weightedtau(sign * sub[score].to_numpy(), sub["delta"].to_numpy()).statistic
            min_p = min(1.0, 2 / math.factorial(n)) if n else 1.0
            note = "" if min_p < 0.05 else f"{n} pairs: p >= {min_p:.2g}, cannot reach significance"
            rows.append({"strategy": strategy, "variant": variant, "label_budget": budget, "score": score, "pairs": n,
                         "kendall_tau": tau, "p": p, "min_p": min_p, "weighted_tau": wtau, "note": note})  # fmt: skip
    return pd.DataFrame(rows)


def score_scatter(cells: pd.DataFrame, scores: pd.DataFrame, out: Path) -> Path | None:
    """Each score against the realised mean delta, one row of panels per strategy, points labelled by source."""
    plt = _plt()
    merged = cells.merge(scores, on=["source", "target"], how="inner")
    present = [s for s in metric_schema.SCORES if s in merged]
    if merged.empty or not present:
        return None
    strategies = sorted(merged["strategy"].unique())
    fig, axes = plt.subplots(
        len(strategies), len(present), figsize=(2.6 * len(present), 2.4 * len(strategies)), squeeze=False
    )
    for row, strategy in zip(axes, strategies, strict=True):
        g = merged[merged["strategy"] == strategy]
        for ax, score in zip(row, present, strict=True):
            ax.scatter(g[score], g["delta"], c=[VERDICT_COLOURS.get(v, "k") for v in g["verdict"]], s=18)
            for _, r in g.iterrows():
                ax.annotate(r["source"], (r[score], r["delta"]), fontsize=6)
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_title(score.split("/")[1], fontsize=8)
            ax.tick_params(labelsize=6)
        row[0].set_ylabel(f"{strategy}\nmean delta", fontsize=8)
    fig.tight_layout()
    path = out / "scores_vs_delta.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------
# The whole report


@dataclass
class Report:
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
    metric: str = "test/acc",
    alpha: float = 0.05,
    margin: float = 0.01,
    title: str = "Transfer versus scratch",
    n_boot: int = 10_000,
) -> Report:
    """Tables (Markdown, CSV, LaTeX), figures (PNG) and efficiency numbers for ``runs`` into ``out``.

    ``runs`` may hold FAILED/KILLED runs (``load_runs(include_failed=True)``): the cells count them, everything else
    reads FINISHED runs only.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = summarize(runs, metric, alpha, margin, n_boot)
    if "status" in runs:
        runs = runs[runs["status"] == "FINISHED"]
    rows = table_rows(cells, metric)
    files = []
    md = markdown_table(rows)
    (out / "verdicts.md").write_text(md + "\n")
    pd.DataFrame(rows, columns=list(rows[0]) if rows else TABLE_COLUMNS).to_csv(out / "verdicts.csv", index=False)
    ref_cells = summarize(runs, metric, alpha, margin, n_boot, against="reference")
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
    markdown = _summary_markdown(title, md, eff, metric, alpha, margin, scores, corr, ref_md, cells, ref_cells)
    flags = provenance_flags(runs)
    headline["report/pairs_provenance_mismatch"] = float(len(flags))
    if not flags.empty:
        flags.to_csv(out / "provenance.csv", index=False)
        files.append(out / "provenance.csv")
        markdown += (
            f"\n## Pairs computed by different code\n\n{len(flags)} transfer run(s) and their baselines ran different"
            " code or library versions (reused runs from another commit or environment); their deltas mix a change"
            " of code with transfer. Re-run them with `rerun=all` to compare like with like.\n\n"
            + _frame_markdown(flags)
            + "\n"
        )
    (out / "report.md").write_text(markdown)
    files.append(out / "report.md")
    (out / "headline.json").write_text(json.dumps(headline, indent=1))
    return Report(cells, eff, files, markdown, headline, ref_cells)


PROVENANCE_COLUMNS = ["run", "baseline", "differences"]


def provenance_flags(runs: pd.DataFrame) -> pd.DataFrame:
    """Pairs whose transfer run and baseline ran different code or library versions (``git_sha``, ``version/*``):
    a reused baseline may come from an older commit or another torch. Computed from both runs' tags as recorded,
    so it holds for pairs reused from any sweep; one row per transfer run, its differences joined by ``"; "``."""
    if runs.empty or "tags.baseline_run_id" not in runs:
        return pd.DataFrame(columns=PROVENANCE_COLUMNS)
    by_id = {r["run_id"]: r for r in runs.to_dict("records")}
    rows = []
    for r in runs[runs["tags.role"] == "transfer"].to_dict("records"):
        base = by_id.get(r.get("tags.baseline_run_id"))
        if base is None:
            continue
        tags = {k.removeprefix("tags."): v for k, v in r.items() if k.startswith("tags.")}
        base_tags = {k.removeprefix("tags."): v for k, v in base.items() if k.startswith("tags.")}
        differences = provenance_mismatch(tags, base_tags)
        if differences:
            rows.append({"run": r["run_name"], "baseline": base["run_name"], "differences": "; ".join(differences)})
    return pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)


def _frame_markdown(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    rows = [
        {c: (floatfmt.format(v) if isinstance(v, float) else str(v)) for c, v in r.items()}
        for r in df.to_dict("records")
    ]
    return markdown_table(rows)


def family_note(cells: pd.DataFrame, what: str) -> str:
    """The Holm family of a table, named: which cells and how many."""
    n = family(cells)
    return f"Holm family: the {n} cell{'s' if n != 1 else ''} of this table with at least 2 paired seeds ({what})"


def rule_text(alpha: float, margin: float) -> str:
    """The verdict rule in one paragraph (``benchmark.stats``), with this report's alpha and margin."""
    conf = f"{100 * (1 - alpha):g}%"
    return (
        f"Positive: the test of H0 delta <= +{margin:g} rejects at Holm-adjusted p < {alpha:g}; negative: the test of "
        f"H0 delta >= -{margin:g} does; equivalent: both one-sided tests of |delta| >= {margin:g} (TOST, its own Holm "
        f"family over the same cells) reject, i.e. no practical difference; inconclusive: none of these (too few "
        f"seeds or too much noise); insufficient seeds: fewer than 2. The interval shown is the Student-t interval at "
        f"the level Holm tested the cell at ({conf} for a family of one; wider in larger families), so positive <=> it "
        f"lies above +{margin:g}, negative <=> below -{margin:g}, equivalent <=> inside; p (Holm) is the adjusted "
        f"p-value of the test behind the verdict; 'n/a' = zero variance (every seed gave the same delta: no test, the "
        f"margin decides)."
    )


def lost_text(cells: pd.DataFrame) -> str:
    """How failed, diverged and repeated runs were treated, when there were any."""
    parts = []
    lost = int(cells["failed"].sum() + cells["diverged"].sum()) if len(cells) else 0
    if lost:
        parts.append(
            f"{lost} seed(s) failed or diverged in {int(cells['incomplete'].sum())} cell(s), marked "
            f"'{INCOMPLETE}': they are counted in the failed/diverged columns but cannot enter the statistics (no "
            "test metric), so those cells' verdicts rest on the remaining seeds; a diverging transfer run is itself "
            "evidence of negative transfer."
        )
    dup = int(cells["duplicates"].sum()) if len(cells) and "duplicates" in cells else 0
    if dup:
        parts.append(f"{dup} FINISHED run(s) repeated a cell and seed; only the newest of each was counted.")
    return " ".join(parts)


def _summary_markdown(
    title: str, table: str, eff: pd.DataFrame, metric: str, alpha: float, margin: float,
    scores: pd.DataFrame | None = None, corr: pd.DataFrame | None = None, reference_table: str | None = None,
    cells: pd.DataFrame | None = None, ref_cells: pd.DataFrame | None = None,
) -> str:  # fmt: skip
    other = " (or the baseline on the metric a row names)" if "| metric " in table else ""
    cells = cells if cells is not None else pd.DataFrame()
    m = metric_schema.get(metric)
    orient = (
        f"`{metric}`(transfer) − `{metric}`(scratch)"
        if m.higher_is_better
        else f"`{metric}`(scratch) − `{metric}`(transfer) (lower {metric} is better)"
    )
    parts = [
        f"### {title}",
        "",
        f"Delta = {orient}{other}, paired by seed; positive = transfer better. "
        f"{family_note(cells, 'transfer versus baseline')}. {rule_text(alpha, margin)}",
    ]
    lost = lost_text(cells)
    if lost:
        parts += ["", lost]
    parts += ["", table]
    if reference_table is not None:
        ref_cells = ref_cells if ref_cells is not None else pd.DataFrame()
        parts += ["", "**Adaptation versus its reference** (delta = adapted − reference on the same seed, source "
                  "batches, initial weights and budget; " + family_note(ref_cells, "adaptation versus reference") +
                  "): a negative verdict is negative transfer of the adaptation itself.", "",
                  reference_table]  # fmt: skip
    if not eff.empty:
        reached = eff[eff["reached"]]
        parts += ["", "**Training time to reach the scratch baseline's final val/acc**", ""]
        if reached.empty:
            parts.append(f"No transfer run reached its baseline's final val/acc (0 of {len(eff)}).")
        else:
            q = 100 * reached["saved_time"].quantile([0.25, 0.5, 0.75])
            parts.append(
                f"{len(reached)} of {len(eff)} transfer runs reached it; time saved: median {q[0.5]:.0f} % "
                f"(quartiles {q[0.25]:.0f}–{q[0.75]:.0f} %), steps saved: median "
                f"{100 * reached['saved_steps'].median():.0f} %. The seed article claims 60–80 %."
            )
    if scores is not None and not scores.empty:
        parts += ["", "**Transferability and similarity scores per pair** (computed before any fine-tuning; "
                  "similarity needs source images, so it is blank for hub and file sources)", "",
                  _frame_markdown(scores).replace("| nan ", "| —   ")]  # fmt: skip
    if corr is not None and not corr.empty and corr["kendall_tau"].notna().any():
        corr = corr[corr["kendall_tau"].notna()]
        parts += ["", "**Did the scores predict the realised deltas?** Kendall's tau between each score (oriented: "
                  "higher transferability, lower distance) and the mean delta across pairs; 1 = perfect ranking; "
                  "min_p = the smallest p-value that many pairs can give (2/n!).", "",
                  _frame_markdown(corr)]  # fmt: skip
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="MLflow experiment name (e.g. quickstart)")
    parser.add_argument("--sweep", nargs="+", default=None, help="restrict to these sweep ids (parent runs' sweep_id)")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db"
    )
    parser.add_argument("--out", default=None, help="output folder (default reports/<experiment>)")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--margin", type=float, default=0.01, help="practical margin in metric units")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    client = MlflowClient(args.tracking_uri or _default_uri())
    runs = load_runs(args.experiment, sweep_ids=args.sweep, client=client, include_failed=True)
    if runs.empty:
        print(f"no FINISHED runs in experiment {args.experiment!r} ({client.tracking_uri})")
        return 1
    out = Path(args.out or Path("reports") / args.experiment)
    report = build_report(runs, out, client, args.metric, args.alpha, args.margin,
                          title=f"{args.experiment}: transfer versus scratch")  # fmt: skip
    print(report.markdown)
    print(f"wrote {len(report.files)} files to {out.resolve()}{os.sep}")
    for f in report.files:
        print(f"  {f.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
