"""The defaults of ``conf/config.yaml``, for the code that runs without a composed config.

A default has one home: the YAML a user reads and overrides. A sweep gets its values from Hydra's composition; the
code that also runs outside one (the report's command line and functions, the sweep's saved state, the sequential
design built in a notebook or a benchmark) takes its defaults from here, so a default changed in the YAML changes
everywhere at once and none can disagree with it (``tests/test_config.py`` walks the signatures that name one).

Only plain values are read (no interpolation, no Hydra): importing this module costs a YAML parse, nothing else.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import OmegaConf

from benchmark.config_path import CONF_DIR, CONFIG_NAME


@cache
def _primary() -> dict[str, Any]:
    node = OmegaConf.load(CONF_DIR / f"{CONFIG_NAME}.yaml")
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def default(path: str) -> Any:
    """The value at dotted ``path`` of ``conf/config.yaml`` (``"verdict.margin"``); a KeyError names the path."""
    node: Any = _primary()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"conf/{CONFIG_NAME}.yaml has no {path!r}")
        node = node[part]
    return node


METRIC: str = default("verdict.metric")
"""The paired metric a verdict is decided on (``verdict.metric``)."""
ALPHA: float = float(default("verdict.alpha"))
"""1 - the confidence level of a cell's interval (``verdict.alpha``)."""
MARGIN: float = float(default("verdict.margin"))
"""The practical margin in metric units (``verdict.margin``)."""
AT_CAP: bool = bool(default("verdict.at_cap"))
"""Whether a budget-limited cell keeps the statistics' verdict (``verdict.at_cap``)."""
RERUN: str = str(default("rerun"))
"""What a sweep does with runs already recorded (``rerun``)."""
SEEDS: dict[str, Any] = dict(default("seeds"))
"""The adaptive-seed design's settings (``seeds``: mode, min, max, step, shape, futility)."""
