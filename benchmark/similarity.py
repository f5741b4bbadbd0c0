"""Domain similarity between two samples of features, e.g. a source and a target dataset embedded by one network.

* :func:`mmd` — squared maximum mean discrepancy with an RBF kernel (Gretton et al., 2012);
* :func:`frechet_distance` — Fréchet (2-Wasserstein) distance between fitted Gaussians, the FID formula
  (Dowson and Landau, 1982; Heusel et al., 2017);
* :func:`proxy_a_distance` — proxy A-distance from a linear domain classifier's held-out error (Ben-David et al.,
  2010).

Lower means "more similar" for MMD and the Fréchet distance; PAD lies in ``[0, 2]``, 0 for indistinguishable domains.
Inputs are ``x`` of shape ``(n, d)`` and ``y`` of shape ``(m, d)``: 2-D, finite, the same ``d``, and at least two rows
each. Degenerate samples (constant, duplicated, ``n < d``, huge or tiny scales) give finite results; overflow of the
result itself raises ``ValueError``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["frechet_distance", "mmd", "proxy_a_distance"]

_EPS = np.finfo(np.float64).eps
# Squared distances computed as |a|^2 + |b|^2 - 2 a.b carry round-off of a few eps * (|a|^2 + |b|^2); at or below
# this multiple of twice the largest squared norm they are indistinguishable from 0 and are set to exactly 0
# (identical points stay identical, and a zero median is recognised as zero).
_D2_ROUNDOFF = 1e3 * _EPS
# Offset added to both covariances when sqrtm of their product fails, on features scaled to max |value| = 1 (the
# FID reference implementation adds 1e-6 * I on raw Inception features, whose scale is of the same order).
_FRECHET_OFFSET = 1e-6


def mmd(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, biased: bool = False) -> float:
    """Squared maximum mean discrepancy between the samples ``x`` and ``y`` under a Gaussian RBF kernel.

    Gretton, Borgwardt, Rasch, Schölkopf and Smola, "A Kernel Two-Sample Test", JMLR 2012. The kernel is
    ``k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2))``. By default this returns the **unbiased** U-statistic (eq. 3 of the
    paper: within-sample sums over ``i != j``, divided by ``n (n - 1)`` and ``m (m - 1)``), whose expectation is the
    population MMD^2; it is **not clipped** and can be slightly negative when the two distributions are (nearly) the
    same, which is what makes it usable as a test statistic. ``biased=True`` returns the V-statistic (all pairs,
    divided by ``n^2`` and ``m^2``), which is always ``>= 0`` and is exactly 0 for ``x`` identical to ``y``.

    ``bandwidth=None`` applies the median heuristic: the median Euclidean distance over all distinct pairs of the
    pooled sample ``x`` ∪ ``y``. If that median is 0 (more than half of the pairs coincide), the mean of the non-zero
    distances is used instead; if every pooled point is identical the MMD is exactly 0 for any kernel and 0.0 is
    returned. Distances below about ``1e-6`` of the pooled sample's extent are round-off in the expansion
    ``|a|^2 + |b|^2 - 2 a.b`` and count as exactly 0. Costs ``O((n + m)^2 d)`` time and ``O((n + m)^2)`` memory
    (about 100 MB for 2,000 + 2,000 points).
    """
    a, b = _pair(x, y, "mmd")
    if bandwidth is not None:
        bw = float(bandwidth)
        if not (np.isfinite(bw) and bw > 0):
            raise ValueError(f"mmd: bandwidth must be a positive finite number or None, got {bandwidth!r}")
    if not isinstance(biased, (bool, np.bool_)):
        raise ValueError(f"mmd: biased must be True or False, got {biased!r}")
    n, m = len(a), len(b)
    # The kernel is translation invariant; dividing points and bandwidth by one constant leaves it unchanged. Both
    # keep squared norms far from overflow and reduce the cancellation in |a|^2 + |b|^2 - 2 a.b.
    centre = np.concatenate([a, b]).mean(axis=0)
    a, b = a - centre, b - centre
    scale = max(np.abs(a).max(), np.abs(b).max())
    if scale == 0.0:
        return 0.0  # every pooled point is the same point
    a, b = a / scale, b / scale
    na, nb = (a * a).sum(axis=1), (b * b).sum(axis=1)
    zero = _D2_ROUNDOFF * 2.0 * max(na.max(), nb.max())  # squared distances at or below this are round-off
    dxx, dyy, dxy = _sq_dists(a, na, a, na, zero), _sq_dists(b, nb, b, nb, zero), _sq_dists(a, na, b, nb, zero)
    np.fill_diagonal(dxx, 0.0)
    np.fill_diagonal(dyy, 0.0)

    if bandwidth is None:
        # median over the distinct pooled pairs, from the squared distances (sqrt is monotone, so only the two middle
        # order statistics need a square root)
        d2 = np.concatenate([dxx[np.triu_indices(n, k=1)], dyy[np.triu_indices(m, k=1)], dxy.ravel()])
        lo, hi = (len(d2) - 1) // 2, len(d2) // 2
        middle = np.partition(d2, [lo, hi])
        h = 0.5 * (math.sqrt(middle[lo]) + math.sqrt(middle[hi]))
        if h == 0.0:
            positive = d2[d2 > 0]
            if positive.size == 0:
                return 0.0  # the points differ by less than round-off: one point mass, as far as floats can tell
            h = float(np.sqrt(positive).mean())
    else:
        h = bw / scale
    kxx, kyy, kxy = (_rbf_inplace(d2, h) for d2 in (dxx, dyy, dxy))

    if biased:
        value = kxx.mean() + kyy.mean() - 2.0 * kxy.mean()
    else:
        # k(a, a) = 1 on the diagonals (their distances were set to exactly 0 above): drop those n + m terms
        value = (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2.0 * kxy.mean()
    return _finite(float(value), "mmd", a.shape, b.shape)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to ``x`` and ``y`` (the FID formula on arbitrary features).

    Dowson and Landau, "The Fréchet distance between multivariate normal distributions", J. Multivariate Anal. 1982;
    used as FID by Heusel, Ramsauer, Unterthiner, Nessler and Hochreiter, NeurIPS 2017. With sample means ``mu`` and
    unbiased (``1 / (n - 1)``) sample covariances ``S``, as in the FID reference code,
    ``d^2 = |mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^{1/2})``; the value is a squared distance, in squared
    feature units.

    ``(S_x S_y)^{1/2}`` is ``scipy.linalg.sqrtm``; as in the FID reference, if it is not finite or has a diagonal
    imaginary part above ``1e-3`` (a singular or ill-conditioned product, e.g. ``n <= d`` or constant features) it is
    recomputed as ``sqrtm((S_x + eps I)(S_y + eps I))``, and smaller imaginary parts, which are round-off for this
    product of two PSD matrices, are discarded; if that fails too, ``ValueError``. Before that both samples are
    centred at the pooled mean and divided by the pooled ``max |value|`` (the result scales back by its square), so
    ``eps = 1e-6`` is relative to the data and huge or tiny features neither overflow nor vanish. Round-off can make
    the result of near-identical samples slightly negative; it is clipped to 0. ``x`` identical to ``y`` gives 0.
    ``sqrtm`` costs ``O(d^3)``: about a second for ``d = 512``.
    """
    a, b = _pair(x, y, "frechet_distance")
    centre = np.concatenate([a, b]).mean(axis=0)
    a, b = a - centre, b - centre
    scale = max(np.abs(a).max(), np.abs(b).max())
    if scale == 0.0:
        return 0.0
    a, b = a / scale, b / scale
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = _sqrtm(cov_a @ cov_b)
    if covmean is None:
        offset = _FRECHET_OFFSET * np.eye(cov_a.shape[0])
        covmean = _sqrtm((cov_a + offset) @ (cov_b + offset))
    if covmean is None:
        raise ValueError(
            f"frechet_distance: the matrix square root of the covariance product is not finite even with a "
            f"{_FRECHET_OFFSET} * I offset, for x of shape {a.shape} and y of shape {b.shape}"
        )
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    with np.errstate(over="ignore"):  # a result beyond float64 range becomes inf, which _finite reports
        value = max(value, 0.0) * scale * scale
    return _finite(value, "frechet_distance", a.shape, b.shape)


def proxy_a_distance(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` of a linear domain classifier, clipped to ``[0, 2]``.

    Ben-David, Blitzer, Crammer, Kulesza, Pereira and Vaughan, "A theory of learning from different domains", Machine
    Learning 2010 (the proxy of the H-divergence from Ben-David et al., NeurIPS 2006). The samples are labelled by
    domain (``x`` -> 0, ``y`` -> 1); the larger one is first subsampled without replacement to the size of the smaller,
    so a size imbalance cannot pass for separability (predicting the majority domain would otherwise beat 50 %).
    Each domain is split in half at random (stratified: ``k // 2`` rows of each domain train, the rest test), features
    are standardised with statistics of the training half, and an L2-regularised logistic regression (``C = 1``,
    lbfgs) is fit; ``err`` is its error on the held-out half. 0 means the classifier does no better than chance
    (``err >= 0.5``), 2 that it separates the domains perfectly. Deterministic given ``seed`` (a non-negative int):
    the subsample and the split are drawn from ``numpy.random.default_rng(seed)`` and lbfgs has no randomness. With
    few rows the held-out error is coarse (two rows per domain leave one test row each).
    """
    a, b = _pair(x, y, "proxy_a_distance")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"proxy_a_distance: seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(seed)
    k = min(len(a), len(b))
    a = a[np.sort(rng.choice(len(a), size=k, replace=False))]
    b = b[np.sort(rng.choice(len(b), size=k, replace=False))]
    # A global rescale changes nothing after standardisation and keeps the scaler's variances finite.
    scale = max(np.abs(a).max(), np.abs(b).max())
    if scale > 0:
        a, b = a / scale, b / scale
    n_train = k // 2
    perm_a, perm_b = rng.permutation(k), rng.permutation(k)
    x_train = np.concatenate([a[perm_a[:n_train]], b[perm_b[:n_train]]])
    x_test = np.concatenate([a[perm_a[n_train:]], b[perm_b[n_train:]]])
    y_train = np.repeat([0, 1], n_train)
    y_test = np.repeat([0, 1], k - n_train)

    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, max_iter=1000)
    with warnings.catch_warnings():
        # a non-converged lbfgs still yields a usable linear classifier; its held-out error is what is measured
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x_train), y_train)
    err = float(np.mean(clf.predict(scaler.transform(x_test)) != y_test))
    return float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0))


# ---------------------------------------------------------------------------------------------------------------- #
# helpers


def _pair(x: np.ndarray, y: np.ndarray, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as finite float64 2-D arrays with the same columns and >= 2 rows, or a ValueError naming why."""
    out = []
    for name, v in (("x", x), ("y", y)):
        arr = np.asarray(v)
        if arr.ndim != 2:
            raise ValueError(f"{fn}: {name} must be a 2-D (samples, dims) array, got shape {arr.shape}")
        if arr.shape[0] < 2 or arr.shape[1] < 1:
            raise ValueError(f"{fn}: {name} needs at least 2 rows and 1 column, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise ValueError(f"{fn}: {name} must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
        if not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"{fn}: {name} must be finite, got {float(arr[bad])!r} at index {bad}")
        out.append(arr)
    a, b = out
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{fn}: x and y must have the same number of columns, got x of shape {a.shape} and y of shape {b.shape}"
        )
    return a, b


def _sq_dists(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray, zero: float) -> np.ndarray:
    """Pairwise squared distances from the squared norms ``na``, ``nb``; values ``<= zero`` (round-off) become 0."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += na[:, None]
    d2 += nb[None, :]
    d2[d2 <= zero] = 0.0
    return d2


def _rbf_inplace(d2: np.ndarray, h: float) -> np.ndarray:
    """``exp(-d2 / (2 h^2))`` written over ``d2``, with ``k = 1`` at zero distance even when ``h^2`` underflows."""
    gamma = 1.0 / (2.0 * h * h) if h * h > 0 else math.inf
    if math.isinf(gamma):
        return (d2 == 0).astype(np.float64)
    with np.errstate(over="ignore"):  # d2 * gamma beyond float range is +inf, and exp(-inf) = 0 is right
        d2 *= -gamma
    return np.exp(d2, out=d2)


def _sqrtm(mat: np.ndarray) -> np.ndarray | None:
    """Real part of ``scipy.linalg.sqrtm(mat)``, or None when it is not finite or its diagonal is not (nearly) real.

    ``mat`` is a product of two PSD matrices scaled to entries <= 1, so its eigenvalues are real and >= 0 and any
    imaginary part is round-off; the FID reference treats a diagonal imaginary part above 1e-3 as a failure too.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # "singular matrix": handled by the caller's offset
        root = linalg.sqrtm(mat)
    if not np.all(np.isfinite(root)):
        return None
    if np.iscomplexobj(root) and np.abs(np.diagonal(root).imag).max() > 1e-3:
        return None
    return np.real(root)


def _finite(value: float, fn: str, shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> float:
    if not np.isfinite(value):
        raise ValueError(f"{fn}: result {value!r} is not finite (overflow?) for x of shape {shape_x}, y {shape_y}")
    return value
