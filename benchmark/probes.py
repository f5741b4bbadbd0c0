"""Probes of frozen features for the evaluation-only protocols (NumPy and scikit-learn, no gradient):
:func:`cluster_scores` (k-means NMI/ARI, ``cluster``) and :func:`knn_anomaly_auroc` (k-nearest-neighbour anomaly
detection, ``anomaly``). Kept apart from ``benchmark.losses`` so that training strategies never import scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

__all__ = ["cluster_scores", "knn_anomaly_auroc"]


def cluster_scores(
    features: np.ndarray, labels: np.ndarray, n_clusters: int | None = None, seed: int = 0, l2_normalize: bool = False
) -> dict[str, float]:
    """How well k-means clusters of ``features`` recover ``labels``: ``{"nmi": ..., "ari": ...}``.

    Features are standardised per dimension (zero mean, unit variance; constant dimensions become 0) so no single
    large-scale dimension dominates the Euclidean k-means objective, then clustered by scikit-learn's ``KMeans`` with
    ``n_clusters`` (default: the number of distinct labels), ``n_init=10`` and ``random_state=seed``. The assignment is
    scored by ``normalized_mutual_info_score`` (arithmetic normalisation; 1 = the same partition, about 0 =
    independent) and ``adjusted_rand_score`` (1 = the same partition, about 0 = chance, can be negative), e.g. as in
    the clustering evaluation of DeepCluster (Caron et al., ECCV 2018). ``l2_normalize=True`` additionally scales each
    standardised row to unit norm (spherical k-means, cosine geometry); it is off by default because rows near the
    mean get arbitrary directions. Deterministic given ``seed``.
    """
    x = _features(features, "cluster_scores", "features")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"cluster_scores: labels must be 1-D with one entry per row of features ({len(x)}), got shape {y.shape}"
        )
    k = len(np.unique(y)) if n_clusters is None else n_clusters
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(x):
        raise ValueError(
            f"cluster_scores: n_clusters must be an int in [2, n_samples = {len(x)}], got {k!r}"
            + (" (the number of distinct labels)" if n_clusters is None else "")
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"cluster_scores: seed must be a non-negative int, got {seed!r}")
    x = StandardScaler().fit_transform(x)
    if l2_normalize:
        x = _l2_rows(x)
    assignment = KMeans(n_clusters=int(k), n_init=10, random_state=int(seed)).fit_predict(x)
    return {
        "nmi": float(normalized_mutual_info_score(y, assignment)),
        "ari": float(adjusted_rand_score(y, assignment)),
    }


def knn_anomaly_auroc(
    train_normal: np.ndarray, test: np.ndarray, test_is_anomaly: np.ndarray, k: int = 5, normalize: bool = True
) -> float:
    """AUROC of the k-nearest-neighbour anomaly score, with anomalies as the positive class.

    The score of a test row is its mean Euclidean distance to its ``k`` nearest rows of ``train_normal``, the deep
    kNN detector of Bergman, Cohen and Hoshen, "Deep Nearest Neighbor Anomaly Detection", 2020, arXiv:2002.10445. With
    ``normalize=True`` (default) every row is first scaled to unit L2 norm, so the distance ``sqrt(2 - 2 cos)`` is
    monotone in cosine similarity and only feature directions count, the usual choice for deep features (Sun, Ming,
    Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022); all-zero rows stay zero.
    AUROC is ``sklearn.metrics.roc_auc_score``: 1 = every anomaly scores above every normal row, 0.5 = chance.
    ``test_is_anomaly`` is boolean (or 0/1) per test row and must contain both classes.
    """
    train = _features(train_normal, "knn_anomaly_auroc", "train_normal")
    x = _features(test, "knn_anomaly_auroc", "test")
    if train.shape[1] != x.shape[1]:
        raise ValueError(
            f"knn_anomaly_auroc: train_normal and test must have the same feature dimension, got {train.shape} and "
            f"{x.shape}"
        )
    y = np.asarray(test_is_anomaly)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"knn_anomaly_auroc: test_is_anomaly must be 1-D with one entry per test row ({len(x)}), got shape "
            f"{y.shape}"
        )
    if not (y.dtype == bool or np.isin(y, (0, 1)).all()):
        raise ValueError(f"knn_anomaly_auroc: test_is_anomaly must be boolean or 0/1, got values {np.unique(y)[:5]}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            f"knn_anomaly_auroc: test_is_anomaly must contain both normal and anomalous rows to define AUROC, got "
            f"{'all anomalous' if y.all() else 'all normal'} ({len(y)} rows)"
        )
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(train):
        raise ValueError(f"knn_anomaly_auroc: k must be an int in [1, len(train_normal) = {len(train)}], got {k!r}")
    if normalize:
        train, x = _l2_rows(train), _l2_rows(x)
    distances, _ = NearestNeighbors(n_neighbors=int(k)).fit(train).kneighbors(x)
    return float(roc_auc_score(y, distances.mean(axis=1)))


# ---------------------------------------------------------------------------------------------------------------- #
# helpers


def _features(value: np.ndarray, fn: str, name: str) -> np.ndarray:
    """``value`` as a finite float64 2-D array with at least one row and column, or a ValueError naming why."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{fn}: {name} must be a non-empty 2-D (samples, dims) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{fn}: {name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{fn}: {name} contains {int((~np.isfinite(arr)).sum())} non-finite value(s)")
    return arr


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
