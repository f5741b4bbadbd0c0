"""The baseline of ``anomaly``: the same kNN detector on the features of a randomly initialised network."""

from benchmark.strategies.anomaly import Anomaly


class AnomalyRandom(Anomaly):
    """``anomaly`` on the architecture's random initialisation (the scratch baseline's seed-derived weights)."""

    uses_pretrained = False
    role = "baseline"
