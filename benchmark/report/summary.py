"""The prose of ``report.md``: how deltas are oriented, which Holm family a table is, the verdict rule with this
report's alpha and margin, how lost seeds were treated, and the efficiency and score sections around the tables."""

from __future__ import annotations

import pandas as pd

from benchmark import metrics as metric_schema
from benchmark.report.cells import INCOMPLETE, family
from benchmark.report.tables import frame_markdown


def family_note(cells: pd.DataFrame, what: str) -> str:
    """The Holm family of a table, named: which cells and how many."""
    n = family(cells)
    return f"Holm family: the {n} cell{'s' if n != 1 else ''} of this table with at least 2 paired seeds ({what})"


SEQUENTIAL_NOTE = (
    "Adaptive seeds: seeds were added only to cells whose verdict was still open, so these verdicts follow the "
    "group-sequential rule (benchmark.sequential): each test is a repeated p-value over the planned looks "
    "(O'Brien-Fleming boundary, calibrated for small seed counts), Holm-adjusted across the cells, and the interval "
    "is the repeated confidence interval at the level Holm tested the cell at; a cell still open at the last look is "
    "inconclusive."
)
"""What an adaptive sweep's report says about its rule (docs/tutorials/adaptive-seeds.md)."""


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
        f"margin decides). Budget-limited: a run of either side stopped at its budget's cap still improving, or its "
        f"probe's solver did not converge (budget.mode=converged; 'steps' shows what each side reached): the delta "
        f"measures the budget, so the cell gets no verdict ('(at cap)' marks one shown with verdict.at_cap)."
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


def summary_markdown(
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
    if "rule" in cells and (cells["rule"] == "sequential").any():
        parts += ["", SEQUENTIAL_NOTE]
        futile = int(cells["futile"].fillna(False).astype(bool).sum()) if "futile" in cells else 0
        if futile:
            parts[-1] += (
                f" {futile} cell{'s were' if futile != 1 else ' was'} stopped for futility (inconclusive "
                "with fewer seeds than the last look: the predictive chance of any verdict by the last look "
                "had fallen below seeds.futility)."
            )
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
                  frame_markdown(scores).replace("| nan ", "| —   ")]  # fmt: skip
    if corr is not None and not corr.empty and corr["kendall_tau"].notna().any():
        corr = corr[corr["kendall_tau"].notna()]
        parts += ["", "**Did the scores predict the realised deltas?** Kendall's tau between each score (oriented: "
                  "higher transferability, lower distance) and the mean delta across pairs; 1 = perfect ranking; "
                  "min_p = the smallest p-value that many pairs can give (2/n!).", "",
                  frame_markdown(corr)]  # fmt: skip
    return "\n".join(parts) + "\n"
