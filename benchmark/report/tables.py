"""Tables: the display rows of a report's cells (the interval and p-value each verdict used) and how rows and data
frames are written as Markdown and LaTeX."""

from __future__ import annotations

import pandas as pd

from benchmark import config_defaults
from benchmark.report.cells import INCOMPLETE
from benchmark.stats import BUDGET_LIMITED, EQUIVALENT, NEGATIVE, POSITIVE

CI_COLUMN, P_COLUMN = "CI (Holm level)", "p (Holm)"
TABLE_COLUMNS = [
    "source", "target", "strategy", "labels/class", "seeds", "failed", "diverged", "transfer", "scratch", "delta",
    CI_COLUMN, P_COLUMN, "verdict",
]  # fmt: skip


def _pm(mean: float, se: float) -> str:
    if pd.isna(mean):
        return "missing"
    return f"{mean:.3f}" if pd.isna(se) else f"{mean:.3f} ± {se:.3f}"


def _steps(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.0f}"


def _p(value: float, zero_variance: bool) -> str:
    if zero_variance:
        return "n/a"
    return "—" if pd.isna(value) else f"{value:.2g}"


def verdict_text(c) -> str:
    """A cell's verdict as shown: marked ``incomplete`` when seeds failed or diverged, and ``at cap`` when a side of
    a cell shown with ``verdict.at_cap`` stopped at its cap."""
    verdict = c.verdict
    if c.get("budget_limited", False) and verdict != BUDGET_LIMITED:
        verdict += " (at cap)"
    return f"{verdict} ({INCOMPLETE})" if c.incomplete else verdict


def table_rows(cells: pd.DataFrame, metric: str | None = None, reference: str = "scratch") -> list[dict[str, str]]:
    """Display rows of ``summarize``'s cells; a ``variant`` column appears when some cell has one, a ``metric``
    column when some cell is not on ``metric``; ``reference`` names the compared column (``scratch``, or
    ``source_only`` for the reference table). The interval is the one the verdict used (``adj_low``/``adj_high``);
    the p-value is the adjusted p of the test behind the verdict (equivalence for ``equivalent``, else directional).
    """
    rows = []
    show_metric = "metric" in cells and (cells["metric"] != (metric or config_defaults.METRIC)).any()
    show_variant = "variant" in cells and (cells["variant"] != "").any()
    # steps reached per side, when the sides' steps differ somewhere (budget.mode=converged, a solved probe)
    show_steps = (
        "transfer_steps" in cells
        and (
            cells["transfer_steps"].notna()
            & cells["scratch_steps"].notna()
            & (cells["transfer_steps"] != cells["scratch_steps"])
        ).any()
    )
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
                **({"steps": f"{_steps(c.transfer_steps)} / {_steps(c.scratch_steps)}"} if show_steps else {}),
                "delta": "—" if pd.isna(c.delta) else f"{c.delta:+.3f}",
                CI_COLUMN: ci,
                P_COLUMN: _p(p, c.zero_variance),
                "verdict": verdict_text(c) + (" (oracle)" if c.get("selection_oracle", False) else ""),
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


def frame_markdown(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    """Any data frame as a Markdown table (floats to ``floatfmt``), aligned like ``markdown_table``."""
    rows = [
        {c: (floatfmt.format(v) if isinstance(v, float) else str(v)) for c, v in r.items()}
        for r in df.to_dict("records")
    ]
    return markdown_table(rows)
