"""Transfer strategies: one module per strategy id, class = PascalCase(id), base class ``TransferStrategy``."""

from benchmark.strategies.base import ParamGroups, TransferStrategy

__all__ = ["ParamGroups", "TransferStrategy"]
