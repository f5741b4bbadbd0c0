"""The baseline of ``cluster``: the same clustering on the features of a randomly initialised network."""

from benchmark.strategies.cluster import Cluster


class ClusterRandom(Cluster):
    """``cluster`` on the architecture's random initialisation (the same seed-derived weights as the scratch
    baseline): the delta of ``cluster`` against it is what the source's training added to the features."""

    uses_pretrained = False
    role = "baseline"
