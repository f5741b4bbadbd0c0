"""Tuning settings and search spaces (docs/tutorials/tuning.md): the ``tuning:`` block of the primary config and the
``search:`` block of a strategy's YAML, parsed and checked here and nowhere else.

A space is a mapping ``name -> entry``; an entry is either an interval ``{low, high, log}`` (``int: true`` for whole
numbers) or ``{choices: [...]}``. The shared space ranges over the training budget (``budget.*``: the same for a
transfer run and its baseline), a strategy's ``search:`` over its own constructor arguments. Every bad key, bound or
kind is a ValueError that names the value and the choices, raised while the job is composed, so preflight reports it
before anything trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SAMPLERS = ("tpe", "random")
"""``tuning.sampler=`` choices: Optuna's TPE (Bergstra et al., 2011) or uniform random search (DomainBed's)."""

SELECT = ("auto", "oracle")
"""``tuning.select=`` choices, what scores a trial of a domain-adaptation run (data ``adaptation``): ``auto`` is
accuracy on a held-out split of the SOURCE's labelled data (unsupervised for the target: its labels are never read);
``oracle`` is the target's labelled validation split, an explicitly named oracle (tag ``selection_oracle=true``).
Every other run selects on the target's validation split within the label budget (``validation=budget``)."""

CRITERIA = {"source": "source_val", "target": "target_val", "oracle": "target_val_oracle"}
"""The ``tuning_select`` tag of a tuned run or trial: the data its trials were scored on."""

SETTINGS = ("trials", "sampler", "seed", "trial_seed", "select", "space")
ENTRY_KEYS = ("low", "high", "log", "int", "choices")


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``name`` is ``budget.<field>`` or ``strategy.<argument>``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def key(self) -> str:
        """The value's name without its ``budget.``/``strategy.`` prefix (the field or argument it sets)."""
        return self.name.split(".", 1)[1]

    def distribution(self) -> Any:
        """The Optuna distribution (3.x names where present, else the 2.x classes)."""
        from optuna import distributions as d  # optional extra (`tuning`): imported only when a study runs

        if self.choices is not None:
            return d.CategoricalDistribution(list(self.choices))
        if hasattr(d, "FloatDistribution"):
            if self.integer:
                return d.IntDistribution(int(self.low), int(self.high), log=self.log)
            return d.FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.integer:  # optuna 2.x: no log-scaled integer interval
            return d.IntUniformDistribution(int(self.low), int(self.high))
        cls = d.LogUniformDistribution if self.log else d.UniformDistribution
        return cls(float(self.low), float(self.high))


@dataclass(frozen=True)
class Tuning:
    """A cell's tuning settings (``tuning:`` block) with the space of one strategy: the shared ``budget.*`` entries
    and the strategy's own ``search:`` entries. ``trials == 0`` is the default recipe: no study, no change."""

    trials: int = 0
    sampler: str = "tpe"
    seed: int = 0
    trial_seed: int = 1000
    select: str = "auto"
    space: tuple[Dimension, ...] = ()

    @property
    def active(self) -> bool:
        return self.trials > 0

    @property
    def trial_seeds(self) -> range:
        """The run seeds of the trials (``trial_seed + i``): never a seed of the cell itself."""
        return range(self.trial_seed, self.trial_seed + self.trials)

    def criterion(self, strategy_data: str) -> str:
        """What scores this strategy's trials (``CRITERIA``): the source's validation split for domain adaptation
        under ``select=auto``, the target's (an oracle) under ``select=oracle``, else the target's within budget."""
        if strategy_data != "adaptation":
            return CRITERIA["target"]
        return CRITERIA["source"] if self.select == "auto" else CRITERIA["oracle"]


def build_tuning(node: dict[str, Any] | None, search: dict[str, Any] | None, strategy_id: str,
                 budget_keys: list[str], strategy_keys: list[str]) -> Tuning:  # fmt: skip
    """The settings of ``tuning:`` with the space of ``strategy_id``: its ``search:`` entries may only name its own
    arguments (``strategy_keys``), the shared ``space`` only the budget's numeric fields (``budget_keys``)."""
    values = dict(node or {})
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise ValueError(f"tuning: unknown key(s) {unknown}; valid keys: {list(SETTINGS)}")
    trials = values.get("trials", 0)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
        raise ValueError(f"tuning.trials={trials!r} must be a whole number >= 0 (0: the default recipe, no tuning)")
    sampler = values.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ValueError(f"tuning.sampler={sampler!r} is not a valid choice; choose one of: {', '.join(SAMPLERS)}")
    select = values.get("select", "auto")
    if select not in SELECT:
        raise ValueError(f"tuning.select={select!r} is not a valid choice; choose one of: {', '.join(SELECT)}")
    for name in ("seed", "trial_seed"):
        v = values.get(name, 0)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"tuning.{name}={v!r} must be an integer")
    space = parse_space(values.get("space"), "budget", budget_keys, "tuning.space")
    space += parse_space(search, "strategy", strategy_keys, f"strategy {strategy_id!r} search")
    return Tuning(trials, sampler, int(values.get("seed", 0)), int(values.get("trial_seed", 1000)), select, space)


def parse_space(node: dict[str, Any] | None, prefix: str, keys: list[str], where: str) -> tuple[Dimension, ...]:
    """The dimensions of one space block; ``keys`` are the names it may search."""
    if node is None:
        return ()
    if not isinstance(node, dict):
        raise ValueError(f"{where} must be a mapping of name -> {{low, high, log}} or {{choices}}, got {node!r}")
    out = []
    for name, entry in node.items():
        if name not in keys:
            raise ValueError(f"{where}: {name!r} cannot be searched; choose among: {', '.join(keys) or '(none)'}")
        out.append(parse_entry(f"{prefix}.{name}", entry, f"{where}.{name}"))
    return tuple(out)


def parse_entry(name: str, entry: Any, where: str) -> Dimension:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}={entry!r} must be {{low: .., high: .., log: ..}} or {{choices: [..]}}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {list(ENTRY_KEYS)}")
    if "choices" in entry:
        if set(entry) - {"choices"}:
            raise ValueError(f"{where}: give either choices or low/high, not both: {entry!r}")
        choices = entry["choices"]
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"{where}.choices={choices!r} must be a non-empty list")
        return Dimension(name, choices=tuple(choices))
    low, high = entry.get("low"), entry.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or not low < high:
        raise ValueError(f"{where}: low={low!r}, high={high!r} must be finite numbers with low < high")
    log, integer = entry.get("log", False), entry.get("int", False)
    if not isinstance(log, bool) or not isinstance(integer, bool):
        raise ValueError(f"{where}: log={log!r} and int={integer!r} must be true or false")
    if log and low <= 0:
        raise ValueError(f"{where}: a log-scaled interval needs low > 0, got low={low!r}")
    return Dimension(name, float(low) if not integer else int(low), float(high) if not integer else int(high),
                     log, integer)  # fmt: skip
