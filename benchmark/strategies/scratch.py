"""The from-scratch baseline: the same architecture, preprocessing, data and budget, random initialisation."""

from benchmark.strategies.base import TransferStrategy


class Scratch(TransferStrategy):
    """Train every parameter from a random initialisation (nanoGPT's ``init_from='scratch'``).

    Every transfer run is compared with the scratch run that shares its baseline key: same architecture,
    preprocessing, target, label subset, seed and training budget.
    """
