"""The metric schema: for every metric a verdict, a delta or a score ranking can use, its one direction.

One fact, one place: deltas (``benchmark.job``), verdicts, the negative-transfer gap and figures
(``benchmark.report``) and the orientation of transferability and similarity scores (``benchmark.scoring``,
``benchmark.rank``) all read this table. "Better" is oriented here once, so that a positive verdict always means that
transfer did better than its baseline, on a loss as on an accuracy. Pure Python: reports import it without torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """``name`` as logged (``{stage}/{quantity}``); ``higher_is_better`` orients it; ``delta``: whether a transfer run
    logs ``delta/<name>`` = transfer − baseline (raw, not oriented) against its baseline; ``display`` for tables."""

    name: str
    higher_is_better: bool
    delta: bool
    display: str

    @property
    def sign(self) -> int:
        """+1 when higher is better, −1 when lower is: ``sign · (transfer − baseline) > 0`` means transfer is better."""
        return 1 if self.higher_is_better else -1


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("test/acc", True, True, "accuracy"),
        Metric("test/f1_macro", True, True, "macro F1"),
        Metric("test/ece", False, True, "expected calibration error"),
        Metric("test/loss", False, True, "cross-entropy loss"),
        Metric("test/nmi", True, True, "normalised mutual information"),  # clustering
        Metric("test/ari", True, True, "adjusted Rand index"),  # clustering
        Metric("test/auroc", True, True, "AUROC"),  # anomaly detection
        Metric("val/selected_acc", True, False, "validation accuracy of the selected weights"),  # a job's objective
        Metric("transfer/logme", True, False, "LogME"),
        Metric("transfer/leep", True, False, "LEEP"),
        Metric("transfer/nce", True, False, "NCE"),
        Metric("transfer/h_score", True, False, "H-score"),
        Metric("similarity/mmd", False, False, "RBF MMD²"),
        Metric("similarity/frechet", False, False, "Fréchet distance"),
        Metric("similarity/proxy_a_distance", False, False, "proxy A-distance"),
    )
}

DELTA_METRICS: tuple[str, ...] = tuple(n for n, m in METRICS.items() if m.delta)
"""Metrics whose transfer − baseline difference is logged as ``delta/<metric>`` on a transfer run."""

SCORES: tuple[str, ...] = tuple(n for n in METRICS if n.startswith(("transfer/", "similarity/")))
"""Transferability and domain-similarity scores of a (source, target) pair, computed before any fine-tuning."""


def get(name: str) -> Metric:
    """The schema entry of ``name``; a ValueError names the valid metrics (and the closest ones) otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, METRICS, n=3)
        hint = f" (did you mean {close}?)" if close else ""
        valid = sorted(METRICS)
        raise ValueError(f"unknown metric {name!r}{hint}; metrics with a declared direction: {valid}") from None


def sign(name: str) -> int:
    """+1 when a higher ``name`` is better, −1 when a lower one is (see ``Metric.sign``)."""
    return get(name).sign
