"""Tuned versus default recipe (docs/tutorials/tuning.md): when an experiment holds both, each tuned cell beside the
default
cell of the same source, target, strategy, label budget and other settings, with both verdicts, the values its study
chose and what the studies cost on each side of the pair.

A tuned cell's ``variant`` holds a part ``tuned=KxSAMPLER`` (``benchmark.identity.variant``); the other parts are
what the default cell's variant says. Trial runs (``role=trial``) never enter cells: ``load_runs`` keeps baseline and
transfer runs only, and this table reads the tuned runs' own ``tuned.*`` params and ``tuning/*`` metrics.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from benchmark.report.tables import verdict_text

TUNED_PART = re.compile(r"^tuned=\d+x\w+$")
"""The tuning part of a tuned cell's variant (one of its ``, ``-joined parts)."""


def default_variant(variant: str) -> str:
    """The variant of the default-recipe cell a tuned cell is compared with: its own without the tuning part."""
    return ", ".join(p for p in (variant or "").split(", ") if p and not TUNED_PART.match(p))


def tuning_table(cells: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per tuned cell: its default cell's verdict and delta (— when the experiment has none), its own, its
    selection criterion (``oracle`` marked), the chosen values of the transfer side and of the baseline, and each
    side's trials and seconds of tuning."""
    if cells.empty or "tuned" not in cells or not cells["tuned"].any():
        return pd.DataFrame()
    key = ["source", "target", "strategy", "label_budget"]
    plain = cells[~cells["tuned"]].assign(_v=lambda d: d["variant"])
    by_id = runs.set_index("run_id") if "run_id" in runs else pd.DataFrame()
    base_by_key = runs[runs.get("tags.role") == "baseline"].drop_duplicates("tags.run_key", keep="last")
    base_by_key = base_by_key.set_index("tags.run_key") if "tags.run_key" in base_by_key else pd.DataFrame()
    rows = []
    for _, c in cells[cells["tuned"]].iterrows():
        match = plain[(plain[key] == c[key]).all(axis=1) & (plain["_v"] == default_variant(c["variant"]))]
        d = match.iloc[0] if len(match) else None
        run = by_id.loc[c["run_ids"][0]] if c["run_ids"] and c["run_ids"][0] in by_id.index else pd.Series(dtype=object)
        base = base_by_key.loc[run["tags.baseline_key"]] if run.get("tags.baseline_key") in base_by_key.index else None
        rows.append(
            {
                **{k: c[k] for k in key},
                "default verdict": "—" if d is None else verdict_text(d),
                "default delta": "—" if d is None or pd.isna(d["delta"]) else f"{d['delta']:+.3f}",
                "tuned verdict": verdict_text(c) + (" (oracle)" if c.get("selection_oracle") else ""),
                "tuned delta": "—" if pd.isna(c["delta"]) else f"{c['delta']:+.3f}",
                "selection": str(run.get("tags.tuning_select", "—")),
                "chosen (transfer)": _chosen(run),
                "chosen (baseline)": "—" if base is None else _chosen(base),
                "at the space's edge": _edges(run, base),
                "trials (transfer/baseline)": f"{_metric(run, 'tuning/trials', '{:.0f}')}/"
                f"{_metric(base, 'tuning/trials', '{:.0f}')}",
                "tuning s (transfer/baseline)": f"{_metric(run, 'tuning/seconds', '{:.0f}')}/"
                f"{_metric(base, 'tuning/seconds', '{:.0f}')}",
            }
        )
    return pd.DataFrame(rows)


def _chosen(run: pd.Series | None) -> str:
    if run is None:
        return "—"
    values = {k.removeprefix("params.tuned."): v for k, v in run.items() if str(k).startswith("params.tuned.")}
    return ", ".join(f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in sorted(values.items()) if not pd.isna(v)) or "—"


def _edges(run: pd.Series, base: pd.Series | None) -> str:
    """The chosen values that lie at the edge of the searched space (``params.tuning_edge``), per side: a better
    value may lie outside the space."""
    parts = []
    for side, r in (("transfer", run), ("baseline", base)):
        edge = None if r is None else r.get("params.tuning_edge")
        if isinstance(edge, str) and edge:
            parts.append(f"{side}: {edge}")
    return "; ".join(parts) or "—"


def _short(value: str) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(x)) if x.is_integer() and abs(x) < 1e6 else f"{x:.3g}"


def _metric(run: pd.Series | None, name: str, fmt: str) -> str:
    value = None if run is None else run.get(f"metrics.{name}")
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)
