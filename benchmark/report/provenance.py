"""The report's list of pairs computed by different code: a transfer run and its baseline whose ``git_sha`` or
``version/*`` tags differ (what counts as a difference is ``benchmark.provenance``'s)."""

from __future__ import annotations

import pandas as pd

from benchmark.provenance import provenance_mismatch

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
