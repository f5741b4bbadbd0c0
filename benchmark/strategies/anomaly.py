"""Unsupervised transfer, anomaly detection: kNN distance in the source model's feature space, scored by AUROC."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from benchmark.features import extract, pixels
from benchmark.probes import knn_anomaly_auroc
from benchmark.strategies.evaluation import EvaluationProtocol


class Anomaly(EvaluationProtocol):
    """Hold classes out as anomalies; the normal reference is the labelled training subset of the other classes.
    A test image's anomaly score is its mean distance to its ``k`` nearest normal training images in the frozen
    backbone's (L2-normalised) pre-logits features (deep kNN, Bergman et al. 2020); AUROC of anomalies (positive)
    against normal test images. ``anomaly_classes: null`` holds each class out in turn (one-class-out) and reports
    the mean AUROC (``test/auroc``, the verdict metric) and the worst (``test/auroc_min``); a list holds those
    classes out together. Nothing trains. Baseline: ``anomaly_random`` (the random-init network); raw pixels are
    logged alongside (``test/auroc_pixels``).
    """

    def __init__(self, anomaly_classes: list[int] | None = None, k: int = 5, pixels: bool = True):
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.anomaly_classes = None if anomaly_classes is None else sorted(int(c) for c in anomaly_classes)
        self.k, self.pixels = int(k), bool(pixels)

    def settings(self, num_classes: int) -> list[list[int]]:
        if self.anomaly_classes is None:
            return [[c] for c in range(num_classes)]
        bad = [c for c in self.anomaly_classes if not 0 <= c < num_classes]
        if bad or len(self.anomaly_classes) >= num_classes:
            raise ValueError(f"anomaly_classes {self.anomaly_classes} must be class indices in 0..{num_classes - 1} "
                             "leaving at least one normal class")  # fmt: skip
        return [self.anomaly_classes]

    def evaluate(self, model: nn.Module, splits: Any, train_indices: Any, prep: Any, seed: int) -> dict[str, float]:

        settings = self.settings(splits.num_classes)
        train_set = splits.train.subset(train_indices)
        train_data, test_data = prep.apply(train_set), prep.apply(splits.test)
        spaces = {"": (extract(model, train_data)[0].numpy(), extract(model, test_data)[0].numpy())}
        if self.pixels:
            spaces["_pixels"] = (pixels(train_data), pixels(test_data))
        out = {}
        for suffix, (train_f, test_f) in spaces.items():
            aucs = [self._auroc(train_f, train_set.labels, test_f, splits.test.labels, held) for held in settings]
            out[f"test/auroc{suffix}"] = float(np.mean(aucs))
            if suffix == "":
                out["test/auroc_min"] = float(np.min(aucs))
        return out

    def _auroc(self, train_f, train_y, test_f, test_y, held: list[int]) -> float:
        normal = ~np.isin(train_y, held)
        return knn_anomaly_auroc(train_f[normal], test_f, np.isin(test_y, held), k=min(self.k, int(normal.sum())))
