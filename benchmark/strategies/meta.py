"""What the harness needs to know about a strategy, declared in its YAML's ``meta:`` block, never in its class.

The class (``_target_``) says how a run trains or evaluates; ``meta`` says how the run is compared and identified:
its role, its matched baseline, an optional second reference, its verdict metric, whether it reads the source's
weights, and the salt of its random streams. A baseline such as ``cluster_random`` is therefore a YAML file only:
the ``cluster`` protocol with ``role: baseline`` and ``uses_source_weights: false``. The defaults below are stated
once, here; a YAML lists only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from benchmark import metrics

ROLES = ("transfer", "baseline")


@dataclass(frozen=True)
class StrategyMeta:
    """A strategy's comparison metadata (the ``meta:`` block of ``conf/strategy/<id>.yaml``).

    role: ``transfer`` (compared with its baseline) or ``baseline`` (the MLflow tag ``role``).
    baseline: strategy id of the matched baseline every run is compared with (a ``role: baseline`` strategy).
    reference: strategy id of a second comparison (domain adaptation is also compared with ``source_only``), logged
        as ``reference_delta/<metric>`` and summarised in its own verdict table; null for none.
    metric: the metric the verdict is computed on when it is not the sweep's ``verdict.metric`` (``test/nmi`` for
        clustering, which has no accuracy); must have a declared direction in ``benchmark.metrics``.
    uses_source_weights: false when the run ignores the source's weights (``scratch``, SimCLR from random init): its
        run key then keeps only the source's architecture and preprocessing, so every source of one architecture
        shares it.
    seed_salt: mixed into the model-initialisation and data-order seeds. Empty for every real strategy, so a pair
        differs only by what the strategy does; the A/A control sets it to get independent randomness.
    """

    role: str = "transfer"
    baseline: str = "scratch"
    reference: str | None = None
    metric: str | None = None
    uses_source_weights: bool = True
    seed_salt: str = ""

    @classmethod
    def from_config(cls, strategy_id: str, node: dict[str, Any] | None) -> StrategyMeta:
        """The metadata of ``strategy_id`` from its ``meta:`` block; a ValueError names an unknown key or value."""
        node = dict(node or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(node) - set(known))
        if unknown:
            raise ValueError(f"strategy {strategy_id!r}: unknown meta key(s) {unknown}; valid keys: {known}")
        meta = cls(**node)
        if meta.role not in ROLES:
            raise ValueError(f"strategy {strategy_id!r}: meta.role={meta.role!r}; choose one of: {', '.join(ROLES)}")
        if meta.metric is not None:
            metrics.get(meta.metric)  # raises, naming the metrics with a declared direction
        return meta

    @property
    def is_baseline(self) -> bool:
        return self.role == "baseline"
