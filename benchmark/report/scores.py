"""Did a transferability or similarity score predict the realised delta? The scores logged per (source, target) pair
before any fine-tuning, ranked against the cells' mean deltas (Kendall's tau)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from benchmark import metrics as metric_schema
from benchmark.report.cells import by_variant

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
    if cells.empty or scores.empty:
        return pd.DataFrame()
    merged = cells.merge(scores, on=["source", "target"], how="inner")
    rows = []
    for (strategy, variant, budget), g in by_variant(merged, "strategy", "label_budget"):
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
