"""Figures (PNG): source x target delta heatmaps, the forest plot of every cell's interval, learning curves, data
efficiency with the crossover marked, the time saved, and each score against the realised delta.

matplotlib is imported on the first figure (``_plt``), not with the package: a sweep's cell runs, a notebook reading
``summarize`` and the tests of the statistics never pay for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import metrics as metric_schema
from benchmark.report.cells import INCOMPLETE, budget_order, by_variant
from benchmark.stats import BUDGET_LIMITED, EQUIVALENT, INCONCLUSIVE, INSUFFICIENT, NEGATIVE, POSITIVE


def _plt():
    """pyplot on the non-interactive Agg backend (figures are files, and a sweep may run with no display)."""
    # matplotlib costs ~0.5 s to import: paid on the first figure, not by every import of the package
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
    BUDGET_LIMITED: "#e08214",
}


SLUG_MAX = 80
"""Longest variant part of a figure's file name; a longer variant (many settings, a long path) is cut and suffixed
with a digest of the whole, so names stay unique and within the file system's 255-byte limit."""


def variant_slug(variant: str) -> str:
    """The part of a figure's file name that tells a cell's variant apart (``""`` for none, else ``"__<slug>"``)."""
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
    from matplotlib.colors import TwoSlopeNorm  # loaded by _plt's matplotlib import already

    files = []
    lim = max(float(np.nanmax(np.abs(cells["delta"].to_numpy(dtype=float)))), 1e-3) if len(cells) else 1.0
    for (strategy, variant), sc in by_variant(cells, "strategy"):
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
        path = out / f"heatmap_{strategy}{variant_slug(variant)}.png"
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
            if "val/acc" not in wide or "time/elapsed_s" not in wide:  # a solved probe has no epochs
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
        for i, ((strategy, variant), sg) in enumerate(by_variant(g, "strategy")):
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
    reached = eff[eff["reached"] & eff["saved_time"].notna()] if len(eff) else eff
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
