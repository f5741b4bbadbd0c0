"""Transferability scores: how well a frozen source model suits a labelled target, before any fine-tuning.

Every score reads the source model's output on the *target* training images and the target labels, and returns one
float where higher means "expected to transfer better":

* :func:`logme` — log maximum evidence of a Bayesian linear model on penultimate features (You et al., 2021);
* :func:`leep` — log expected empirical prediction from source-class probabilities (Nguyen et al., 2020);
* :func:`nce` — negative conditional entropy of target labels given hard source labels (Tran et al., 2019);
* :func:`h_score` — H-score of features, a Fisher-style between/total variance ratio (Bao et al., 2019).

All four are pure NumPy, deterministic, and validate their inputs: features are 2-D ``(N, D)`` and finite, labels
are 1-D of length ``N`` with at least two distinct values (any hashable dtype; classes are the sorted unique
values). Degenerate inputs (duplicated, constant or all-zero columns, ``N < D``, huge or tiny scales) give a finite
number; inputs that cannot be scored raise ``ValueError`` naming the bad shape or value. None returns NaN or inf.
"""

from __future__ import annotations

import numpy as np

__all__ = ["h_score", "leep", "logme", "nce"]

_EPS = np.finfo(np.float64).eps
# LogME's fixed point runs on lambda = alpha / beta with singular values normalised to s_max = 1. Bounding lambda keeps
# the iteration finite when the evidence has no interior maximum: 1e-12 sits below every retained s_i^2 that matters
# (the rank cut-off is ~1e-13 * s_max), 1e12 makes the features irrelevant to the fit (pure-noise model).
_LAMBDA_MIN, _LAMBDA_MAX = 1e-12, 1e12
_LOGME_MAX_ITER, _LOGME_RTOL = 1000, 1e-10
# LEEP accepts probability rows that sum to 1 within this tolerance (float32 softmax is good to ~1e-6), then
# renormalises them exactly.
_ROW_SUM_ATOL = 1e-4


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: mean per-sample log maximum evidence of a Bayesian linear model on frozen features.

    You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021.
    For each class ``k`` the one-vs-rest target ``y = 1[labels == k]`` is modelled as ``y = F w + noise`` with prior
    ``w ~ N(0, I / alpha)`` and noise precision ``beta``; the log evidence
    ``log p(y | F, alpha, beta) = log N(y; 0, I / beta + F F^T / alpha)`` is maximised over ``(alpha, beta)`` by the
    paper's MacKay fixed-point iteration (``gamma = sum_i beta s_i^2 / (alpha + beta s_i^2)``,
    ``alpha = gamma / |m|^2``, ``beta = (N - gamma) / |y - F m|^2``), run on the economy SVD ``F = U S V^T`` so each
    step costs ``O(rank)`` whatever ``N`` and ``D`` are. The score is the maximised evidence divided by ``N``, averaged
    over classes (higher is better; it is a log density, so it can be positive).

    As in the paper the features are used raw: no centring, no bias, no per-column standardisation. They are divided
    by one global constant, which leaves the maximum unchanged (scaling ``F`` by ``c`` is absorbed by ``alpha``) and
    keeps huge or tiny features in floating-point range. Singular values below numpy's rank tolerance
    (``s_max * max(N, D) * eps``) are dropped, so duplicated, constant or all-zero columns and ``N < D`` are handled
    exactly: the evidence only depends on the rank-``r`` part of ``F``. All-zero features give the evidence of the
    pure-noise model. The evidence is evaluated in closed form at the iteration's final ratio ``lambda = alpha / beta``
    with the common scale of ``(alpha, beta)`` set to its exact optimum, so the returned value is always an attained
    evidence, never above the true maximum. The iteration runs until ``lambda`` changes by less than ``1e-10``
    relative (usually a handful of steps, at most 1000). ``lambda`` is bounded to ``[1e-12, 1e12] * s_max^2``: if a
    one-vs-rest target lies exactly in the span of the features while ``rank < N`` (e.g. the features *are* the one-hot
    labels) the evidence is unbounded, because zero noise fits it perfectly, and the score is then large but finite
    (about ``13.8 (N - rank) / N`` nats per sample).
    """
    f, y, n_classes = _features_and_labels(features, labels, "logme")
    n = f.shape[0]
    onehot = (y[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)  # (N, K) one-vs-rest targets

    scale = np.abs(f).max()
    if scale == 0.0:
        s2 = np.empty((0, 1))
        z = np.empty((0, n_classes))
        perp = (onehot**2).sum(axis=0)
    else:
        u, s, _ = np.linalg.svd(f / scale, full_matrices=False)
        keep = s > s[0] * max(f.shape) * _EPS
        u, s = u[:, keep], s[keep] / s[0]  # s_max = 1: lambda's bounds are relative to the largest singular value
        s2 = (s**2)[:, None]
        z = u.T @ onehot  # (r, K): targets in the left singular basis
        perp = ((onehot - u @ z) ** 2).sum(axis=0)  # squared norm of each target outside the feature span
    rank = s2.shape[0]
    z2 = z**2

    def terms(lam: np.ndarray) -> tuple[np.ndarray, ...]:
        w = s2 + lam[None, :]
        gamma = (s2 / w).sum(axis=0)  # effective number of well-determined parameters
        n_minus_gamma = (n - rank) + (lam[None, :] / w).sum(axis=0)  # N - gamma without cancellation
        m2 = (s2 * z2 / w**2).sum(axis=0)  # |m|^2, the posterior mean's squared norm
        res = perp + ((lam[None, :] / w) ** 2 * z2).sum(axis=0)  # |y - F m|^2
        return gamma, n_minus_gamma, m2, res

    lam = np.ones(n_classes)  # alpha = beta = 1, the paper's start
    for _ in range(_LOGME_MAX_ITER):
        gamma, n_minus_gamma, m2, res = terms(lam)
        # lambda_new = alpha / beta = (gamma / |m|^2) / ((N - gamma) / |y - F m|^2); |m| = 0 means the features do not
        # explain the target at all, i.e. alpha -> inf.
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(m2 > 0, gamma * res / (n_minus_gamma * m2), _LAMBDA_MAX)
        new = np.clip(np.nan_to_num(new, nan=_LAMBDA_MAX, posinf=_LAMBDA_MAX), _LAMBDA_MIN, _LAMBDA_MAX)
        done = np.all(np.abs(new - lam) <= _LOGME_RTOL * lam)
        lam = new
        if done:
            break

    _, _, m2, res = terms(lam)
    # Evidence at the final lambda with the overall precision scale set optimally: with alpha = lambda t and beta = t,
    # m depends on lambda only and the log evidence is N/2 log t - t/2 (|y - F m|^2 + lambda |m|^2) - ..., maximised
    # at t = N / (|y - F m|^2 + lambda |m|^2) (which is what the fixed point's alpha and beta satisfy once converged).
    # D/2 log(alpha) - 1/2 log|alpha I + beta F^T F| is folded into -1/2 sum_i log1p(s_i^2 / lambda): the D - r zero
    # singular values contribute log(alpha) to both terms and cancel.
    t = n / (res + lam * m2)  # res >= (lambda_min / (1 + lambda_min))^2 |y|^2 > 0: t is finite
    evidence = 0.5 * n * (np.log(t) - 1.0 - np.log(2.0 * np.pi)) - 0.5 * np.log1p(s2 / lam[None, :]).sum(axis=0)
    return _finite(float(np.mean(evidence / n)), "logme", f.shape)


def leep(predictions: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: log expected empirical prediction of the source classifier's probabilities for the target labels.

    Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020. With ``theta_i = predictions[i]`` the source-class distribution of target sample
    ``i``, the empirical joint is ``P(y, z) = mean_i theta_iz 1[y_i = y]``, the conditional ``P(y | z) = P(y, z) /
    P(z)``, and the score is ``mean_i log sum_z P(y_i | z) theta_iz`` (<= 0; higher is better).

    ``predictions`` is ``(N, Z)`` with non-negative, finite rows that sum to 1 within ``1e-4`` (softmax outputs, not
    logits); rows are renormalised exactly. A source class no sample puts mass on has ``P(z) = 0``; its conditional
    is set to 0, which changes nothing because every ``theta_iz`` is then 0. The argument of the log is provably
    ``>= 1 / (N Z^2)``; it is still floored at the smallest positive float so rounding can never produce ``log(0)``.
    """
    p = _matrix(predictions, "leep", "predictions")
    y, n_classes = _labels(labels, p.shape[0], "leep", "predictions has {n} rows")
    if np.any(p < 0):
        i, j = np.argwhere(p < 0)[0]
        raise ValueError(f"leep: predictions must be probabilities, got predictions[{i}, {j}] = {float(p[i, j])!r} < 0")
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > _ROW_SUM_ATOL
    if np.any(bad):
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            f"leep: each row of predictions must sum to 1 (softmax probabilities, not logits); {int(bad.sum())} of "
            f"{len(sums)} rows do not, e.g. row {i} sums to {float(sums[i])!r}"
        )
    p = p / sums[:, None]
    n = p.shape[0]
    onehot = (y[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)  # (N, K)
    joint = onehot.T @ p / n  # (K, Z): P(y, z)
    marginal = joint.sum(axis=0)  # P(z)
    cond = np.divide(joint, marginal[None, :], out=np.zeros_like(joint), where=marginal[None, :] > 0)  # P(y | z)
    eep = np.einsum("iz,iz->i", p, cond[y])  # sum_z P(y_i | z) theta_iz
    return _finite(float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny)))), "leep", p.shape)


def nce(source_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target labels given hard source labels, in nats.

    Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019. ``Z`` is
    the source model's hard prediction for each target sample (e.g. the argmax of its source-class probabilities),
    ``Y`` the target label; both are 1-D of equal length and may use any hashable label values. From the empirical
    joint ``P(y, z)``, ``NCE = sum_{y,z} P(y, z) log P(y | z)``: 0 when ``Z`` determines ``Y``, ``-log K`` when they are
    independent and ``Y`` is uniform over ``K`` classes; higher is better. Empty cells of the joint contribute 0
    (``0 log 0 = 0``). The target must have at least two classes; the source may predict a single class (then
    ``NCE = -H(Y)``).
    """
    z = np.asarray(source_labels)
    t = np.asarray(target_labels)
    if z.ndim != 1:
        raise ValueError(f"nce: source_labels must be 1-D, got shape {z.shape}")
    if len(z) == 0:
        raise ValueError("nce: source_labels is empty")
    y, n_classes = _labels(t, len(z), "nce", "source_labels has {n} entries", name="target_labels")
    _, z_idx = np.unique(z, return_inverse=True)
    z_idx = z_idx.reshape(-1)
    joint = np.zeros((n_classes, int(z_idx.max()) + 1))
    np.add.at(joint, (y, z_idx), 1.0)
    joint /= len(z)
    cond = joint / joint.sum(axis=0, keepdims=True)  # every column has at least one sample, so no 0 / 0
    nonzero = joint > 0
    score = float(np.sum(joint[nonzero] * np.log(cond[nonzero])))
    return _finite(min(score, 0.0), "nce", z.shape)  # rounding can leave +1e-17 when Z determines Y


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: ``tr(cov(f)^+ cov(E[f | y]))``, the share of feature variance explained by the class means.

    Bao, Li, Huang, Wang, Ma and Zheng, "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", ICIP 2019. ``cov(f)`` is the (population, ``1/N``) covariance of the centred features and
    ``cov(E[f | y]) = sum_y P(y) (mu_y - mu)(mu_y - mu)^T`` the covariance of the class-conditional means; the score
    lies in ``[0, K - 1]`` for ``K`` classes (higher is better).

    The inverse is the Moore-Penrose **pseudo-inverse** (not a ridge), so the score is exactly invariant to any
    injective linear map of the features: duplicated columns, rescaled columns and ``N < D`` change nothing, and a
    constant column (zero variance) is ignored. It is evaluated without forming the covariance: columns are scaled
    by their maximum magnitude, centred and standardised (constant columns, with a standard deviation below
    ``64 eps`` of their magnitude, are dropped), and with ``U_r`` an orthonormal basis of the centred data's column
    space (economy SVD, numpy's rank tolerance) the score equals ``sum_y |U_r^T 1_y|^2 / N_y``. All-constant features
    score 0. Note that with ``N <= D`` and generic features the score saturates at ``K - 1``: the pseudo-inverse
    then fits the training sample exactly, as any unregularised estimate must.
    """
    f, y, n_classes = _features_and_labels(features, labels, "h_score")
    magnitude = np.abs(f).max(axis=0)
    f = f[:, magnitude > 0] / magnitude[magnitude > 0]  # all-zero columns carry no variance; the rest lie in [-1, 1]
    f = f - f.mean(axis=0)
    std = f.std(axis=0)
    live = std > 64 * _EPS  # columns of one repeated value leave only centring round-off behind
    if not np.any(live):
        return 0.0
    f = f[:, live] / std[live]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    u = u[:, s > s[0] * max(f.shape) * _EPS]
    onehot = (y[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)
    counts = onehot.sum(axis=0)
    score = float(np.sum((u.T @ onehot) ** 2 / counts[None, :]))
    return _finite(score, "h_score", f.shape)


# ---------------------------------------------------------------------------------------------------------------- #
# validation


def _matrix(a: np.ndarray, fn: str, name: str) -> np.ndarray:
    """``a`` as a finite float64 ``(N, D)`` array with ``N, D >= 1``, or a ValueError naming what was received."""
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{fn}: {name} must be a 2-D (samples, dims) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{fn}: {name} must be non-empty, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise ValueError(f"{fn}: {name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{fn}: {name} must be finite, got {float(arr[tuple(bad)])!r} at index {tuple(int(i) for i in bad)}"
        )
    return arr


def _labels(labels: np.ndarray, n: int, fn: str, other: str, name: str = "labels") -> tuple[np.ndarray, int]:
    """Labels as class indices 0..K-1 (sorted unique values) and K, checking 1-D, length ``n`` and ``K >= 2``.

    ``other`` describes the array that fixed ``n``, as a template with ``{n}``, for the length-mismatch message.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"{fn}: {name} must be 1-D, got shape {lab.shape}")
    if len(lab) != n:
        raise ValueError(f"{fn}: {name} has {len(lab)} entries but {other.format(n=n)}; they must match")
    classes, idx = np.unique(lab, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{fn}: {name} must contain at least 2 classes, got {len(classes)}: {classes.tolist()!r}")
    return idx.reshape(-1), len(classes)


def _features_and_labels(features: np.ndarray, labels: np.ndarray, fn: str) -> tuple[np.ndarray, np.ndarray, int]:
    f = _matrix(features, fn, "features")
    y, n_classes = _labels(labels, f.shape[0], fn, "features has {n} rows")
    return f, y, n_classes


def _finite(value: float, fn: str, shape: tuple[int, ...]) -> float:
    """Last line of defence: a non-finite score is a bug or an unforeseen degenerate input, never a return value."""
    if not np.isfinite(value):
        raise ValueError(f"{fn}: score is not finite ({value!r}) for inputs of shape {shape}; the input is degenerate")
    return value
