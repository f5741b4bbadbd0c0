"""Judge source rankings against what fine-tuning realised, next to two baselines that are hard to beat.

Transferability scores (LogME, LEEP, NCE, H-score) are only worth computing if they rank sources better than what
is known for free: the model's size and its reported ImageNet top-1 (Kornblith et al., CVPR 2019: better ImageNet
models transfer better; Agostinelli et al., ECCV 2022 and Ibrahim et al., 2023: scores often fail to beat such
baselines on real zoos). This module adds both baselines to a ranking table, reads the realised mean deltas of the
same sources on the same target from the store, and reports Kendall's tau and weighted tau of every predictor
against them, with its leave-one-model-out range.

Leave-one-model-out stability: ranking n models by a per-model score and dropping one leaves the others' order
unchanged, so the stability that matters is that of the *agreement with the realised deltas*: for each of the n
subsets of n - 1 models, Kendall's tau of predictor vs delta; ``loo_min``/``loo_max`` are the extremes. A predictor
whose tau swings from +1 to 0 when one model leaves is carried by that model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import timm
from scipy import stats

from benchmark import metrics
from benchmark.spec import JobSpec

BASELINES: tuple[str, ...] = ("params", "imagenet_top1")
"""Baseline predictors, both oriented so that larger should mean a larger delta."""

MIN_PAIRS = 3
"""Sources needed for a tau (and per leave-one-out subset): with two, tau is always +1 or -1."""

CONSTANT = 1e-9
"""Relative spread below which a predictor counts as constant (no tau): H-score with fewer examples than feature
dimensions equals C - 1 for every source, and its last digits would otherwise be ranked as if they meant something."""


def parameter_count(job: JobSpec) -> int:
    """Parameters of the source's backbone, counted on the architecture without its classifier (the head is the
    target's, so its size says nothing about the source)."""
    model = timm.create_model(job.source.arch, pretrained=False, num_classes=0, **job.source.model_kwargs)
    return int(sum(p.numel() for p in model.parameters()))


def reported_top1(job: JobSpec) -> float:
    """The ImageNet-1k top-1 (%) the source's weights kind reports (zoo models: ``ZOO``); NaN for weights this
    harness pretrained or that report none."""
    top1 = job.source.weights.reported_top1
    return math.nan if top1 is None else float(top1)


def baseline_columns(job: JobSpec) -> dict[str, float]:
    return {"params": parameter_count(job), "imagenet_top1": reported_top1(job)}


def realised_deltas(runs: pd.DataFrame, target: str, metric: str = "delta/test/acc") -> pd.DataFrame:
    """Mean realised delta per (experiment, strategy, label budget, source) of transfer runs on ``target``, with the
    number of seeds. ``runs`` is ``benchmark.report.load.load_runs``'s table (one row per run key)."""
    col = f"metrics.{metric}"
    need = {"tags.role", "tags.target", "tags.strategy", "tags.label_budget", "tags.source", col}
    if runs.empty or not need <= set(runs.columns):
        return pd.DataFrame(columns=["experiment_id", "strategy", "label_budget", "source", "delta", "seeds"])
    sel = runs[(runs["tags.role"] == "transfer") & (runs["tags.target"] == target)].dropna(subset=[col])
    keys = ["experiment_id", "tags.strategy", "tags.label_budget", "tags.source"]
    out = sel.groupby(keys)[col].agg(["mean", "count"]).reset_index()
    out.columns = ["experiment_id", "strategy", "label_budget", "source", "delta", "seeds"]
    return out


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < MIN_PAIRS or len(set(y)) < 2 or np.ptp(x) <= CONSTANT * max(1.0, float(np.abs(x).max())):
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def predictor_sign(name: str) -> int:
    """+1 when a larger value should predict a larger delta (baselines, transferability), -1 for distances."""
    return 1 if name in BASELINES else metrics.sign(name)


def rank_correlations(table: pd.DataFrame, deltas: pd.DataFrame) -> pd.DataFrame:
    """Per group of realised deltas (experiment, strategy, label budget) and per predictor (every score column of
    ``table`` and the baselines): sources compared, Kendall's tau, weighted tau (``scipy.stats.weightedtau``: top
    ranks weigh more) and the leave-one-model-out range of tau. Predictors are oriented by ``predictor_sign``, so a
    positive tau always means "ranked the sources right"."""
    predictors = [c for c in (*metrics.SCORES, *BASELINES) if c in table]
    rows = []
    for (exp_id, strategy, budget), g in deltas.groupby(["experiment_id", "strategy", "label_budget"]):
        merged = table.merge(g[["source", "delta", "seeds"]], on="source", how="inner")
        for name in predictors:
            sub = merged[["source", name, "delta"]].dropna()
            x = predictor_sign(name) * sub[name].to_numpy(dtype=float)
            y = sub["delta"].to_numpy(dtype=float)
            n = len(sub)
            tau = _tau(x, y)
            wtau = float(stats.weightedtau(x, y).statistic) if not math.isnan(tau) else math.nan
            loo = [_tau(np.delete(x, i), np.delete(y, i)) for i in range(n)] if n - 1 >= MIN_PAIRS else []
            loo = [t for t in loo if not math.isnan(t)] or [math.nan]
            rows.append({"experiment_id": exp_id, "strategy": strategy, "label_budget": budget, "predictor": name,
                         "sources": n, "kendall_tau": tau, "weighted_tau": wtau, "loo_min": min(loo),
                         "loo_max": max(loo)})  # fmt: skip
    return pd.DataFrame(rows)
