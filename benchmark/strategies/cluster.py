"""Unsupervised transfer, clustering: k-means on the source model's features, no label used to train anything."""

from __future__ import annotations

from typing import Any

from torch import nn

from benchmark.features import extract, pixels
from benchmark.probes import cluster_scores
from benchmark.strategies.evaluation import EvaluationProtocol


class Cluster(EvaluationProtocol):
    """Cluster the target's test images by k-means (k = number of classes) on the frozen backbone's pre-logits
    features and score the partition against the true labels: NMI (``test/nmi``, the verdict metric) and ARI
    (``test/ari``). Nothing trains; the labels are read only to score. The baseline, ``cluster_random``, clusters
    the features of the same architecture at its random initialisation (same seed); clustering the raw pixels is
    logged alongside (``test/nmi_pixels``, ``test/ari_pixels``) as the no-network reference. k-means: scikit-learn,
    standardised features, 10 restarts seeded by the run's seed (``benchmark.probes.cluster_scores``).
    """

    def __init__(self, n_clusters: int | None = None, pixels: bool = True, split: str = "test"):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        if n_clusters is not None and int(n_clusters) < 2:
            raise ValueError(f"n_clusters must be >= 2 or null (the number of classes), got {n_clusters}")
        self.n_clusters = None if n_clusters is None else int(n_clusters)
        self.pixels, self.split = bool(pixels), split

    def evaluate(self, model: nn.Module, splits: Any, train_indices: Any, prep: Any, seed: int) -> dict[str, float]:

        images = getattr(splits, self.split)
        data = prep.apply(images)
        feats, _ = extract(model, data)
        k = self.n_clusters or splits.num_classes
        scores = cluster_scores(feats.numpy(), images.labels, n_clusters=k, seed=seed)
        out = {"test/nmi": scores["nmi"], "test/ari": scores["ari"]}
        if self.pixels:
            px = cluster_scores(pixels(data), images.labels, n_clusters=k, seed=seed)
            out.update({"test/nmi_pixels": px["nmi"], "test/ari_pixels": px["ari"]})
        return out
