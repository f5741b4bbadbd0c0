"""Time to accuracy: how many optimiser steps and seconds a transfer run needs to reach its scratch baseline's final
validation accuracy, from the per-epoch curves MLflow holds (the seed article claims 60-80 % of the time saved)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark.report.cells import CELL


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
    ``reached`` False when the transfer run never reaches the baseline. A run without a training curve (a solved
    probe) has no time to accuracy and no row.
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
        if "time/elapsed_s" not in own:  # no training curve (a solved probe takes no optimiser step)
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
