"""Building blocks for domain-adaptation and self-supervised transfer strategies, plus feature-quality probes.

Differentiable PyTorch pieces, meant to be called inside a training step (batches of 32-256, features of 32-2048):

* :func:`grad_reverse`, :func:`dann_lambda`, :class:`DomainDiscriminator`, :func:`dann_loss` — domain-adversarial
  training (DANN; Ganin et al., JMLR 2016);
* :func:`coral_loss` — Deep CORAL (Sun and Saenko, ECCV Workshops 2016);
* :func:`mk_mmd_loss` — multi-kernel MMD of DAN (Long et al., ICML 2015);
* :func:`nt_xent_loss` and :func:`simclr_augment` — SimCLR's contrastive loss and batched augmentations (Chen et al.,
  ICML 2020).

The NumPy/scikit-learn probes of frozen features (clustering, kNN anomaly detection) are in ``benchmark.probes``.

Feature inputs of the losses are ``(n, d)`` tensors; shapes are checked (errors name the bad shape), values are not
(a non-finite feature propagates to a non-finite loss, which the trainer reports), so no check costs a device sync.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DomainDiscriminator",
    "GradientReversal",
    "coral_loss",
    "dann_lambda",
    "dann_loss",
    "grad_reverse",
    "mk_mmd_loss",
    "nt_xent_loss",
    "simclr_augment",
]

MMD_ESTIMATORS = ("biased", "linear")


# ---------------------------------------------------------------------------------------------------------------- #
# DANN: gradient reversal and a domain discriminator


class GradientReversal(torch.autograd.Function):
    """Identity on the forward pass; multiplies the incoming gradient by ``-lambda_`` on the backward pass.

    The gradient reversal layer of Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand and Lempitsky,
    "Domain-Adversarial Training of Neural Networks", JMLR 2016. Placed between a feature extractor and a
    domain classifier, one minimisation of the domain loss trains the classifier to separate the domains and the
    features to confuse it. Use through :func:`grad_reverse`, which validates ``lambda_``.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)  # a new tensor, so autograd routes the gradient through backward below

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * -ctx.lambda_, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """``x`` unchanged, but gradients flowing back through it are multiplied by ``-lambda_`` (Ganin et al., 2016).

    ``lambda_`` must be finite and ``>= 0`` (0 blocks the gradient; the DANN schedule is :func:`dann_lambda`).
    """
    lam = _finite_float(lambda_, "grad_reverse", "lambda_")
    if lam < 0:
        raise ValueError(f"grad_reverse: lambda_ must be >= 0 (the sign flip is built in), got {lambda_!r}")
    return GradientReversal.apply(x, lam)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's adaptation-weight schedule ``2 / (1 + exp(-gamma p)) - 1``, rising from 0 at ``p = 0`` towards 1.

    Ganin et al., JMLR 2016: ``p`` is the training progress, linear from 0 to 1, and ``gamma = 10``.
    The ramp suppresses the noisy domain signal of the untrained discriminator early on; at ``p = 1`` the weight is
    ``tanh(gamma / 2)`` (0.99991 for ``gamma = 10``), so it approaches but never reaches 1. ``progress`` outside
    ``[0, 1]`` is an error (typically a wrong step count), not clamped.
    """
    p = _finite_float(progress, "dann_lambda", "progress")
    g = _finite_float(gamma, "dann_lambda", "gamma")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dann_lambda: progress must lie in [0, 1], got {progress!r}")
    if g <= 0:
        raise ValueError(f"dann_lambda: gamma must be > 0, got {gamma!r}")
    return math.tanh(g * p / 2.0)  # == 2 / (1 + exp(-g p)) - 1, without overflow for large g p


class DomainDiscriminator(nn.Module):
    """A small MLP that outputs one logit per row: ``Linear(in, hidden) -> ReLU -> Dropout -> Linear(hidden, 1)``.

    The domain classifier of DANN (Ganin et al., JMLR 2016), sized down: the paper's Office network used two hidden
    layers of 1024; one hidden layer of 256 is enough to separate domains on the benchmark's small features and keeps
    the adversary from dominating. :meth:`forward` returns logits of shape ``(n,)`` (not probabilities), to be used
    with ``binary_cross_entropy_with_logits`` as in :func:`dann_loss`. ``dropout`` in ``[0, 1)`` acts after the ReLU.
    """

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DomainDiscriminator: {name} must be a positive int, got {value!r}")
        p = _finite_float(dropout, "DomainDiscriminator", "dropout")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DomainDiscriminator: dropout must lie in [0, 1), got {dropout!r}")
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(p), nn.Linear(hidden, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


def dann_loss(
    discriminator: nn.Module, source_features: Tensor, target_features: Tensor, lambda_: float = 1.0
) -> Tensor:
    """Domain-classification loss of DANN on gradient-reversed features (Ganin et al., JMLR 2016).

    Source rows are labelled 1, target rows 0; the loss is the binary cross-entropy with logits, averaged over all
    ``n_s + n_t`` pooled rows. Adding it to the task loss and minimising trains the discriminator to tell the domains
    apart while, through :func:`grad_reverse`, the feature extractor receives ``-lambda_`` times that gradient and
    learns domain-invariant features. The discriminator must map ``(n, d)`` to ``n`` logits (shape ``(n,)`` or
    ``(n, 1)``); the batches may differ in size but not in ``d``.
    """
    _check_pair(source_features, target_features, "dann_loss", min_rows=1)
    features = grad_reverse(torch.cat([source_features, target_features]), lambda_)
    logits = discriminator(features)
    n = features.shape[0]
    if logits.numel() != n:
        raise ValueError(
            f"dann_loss: the discriminator must return one logit per row ({n}), got output of shape "
            f"{tuple(logits.shape)}"
        )
    logits = logits.reshape(n)
    labels = torch.cat([logits.new_ones(source_features.shape[0]), logits.new_zeros(target_features.shape[0])])
    return F.binary_cross_entropy_with_logits(logits, labels)


# ---------------------------------------------------------------------------------------------------------------- #
# moment and kernel alignment


def coral_loss(source: Tensor, target: Tensor) -> Tensor:
    """Deep CORAL loss ``||C_s - C_t||_F^2 / (4 d^2)`` between the feature covariances of two batches.

    Sun and Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV Workshops 2016, eq. 1-3.
    ``C`` is the unbiased (``1 / (n - 1)``) sample covariance of each batch, so both batches need at least 2 rows;
    they may differ in size. The loss is >= 0, invariant to shifting either batch by a constant (covariance ignores
    the mean, which is why CORAL is usually paired with a task loss), and differentiable in both inputs.
    """
    _check_pair(source, target, "coral_loss", min_rows=2)
    d = source.shape[1]
    diff = _covariance(source) - _covariance(target)
    return (diff * diff).sum() / (4.0 * d * d)


def _covariance(x: Tensor) -> Tensor:
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (x.shape[0] - 1)


def mk_mmd_loss(
    source: Tensor,
    target: Tensor,
    kernel_mults: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    estimator: str = "biased",
) -> Tensor:
    """Squared multi-kernel MMD between two batches: the *mean* over Gaussian kernels of each kernel's MMD^2.

    The MK-MMD of DAN (Long, Cao, Wang and Jordan, "Learning Transferable Features with Deep Adaptation Networks",
    ICML 2015), with equal kernel weights. Kernel ``u`` is ``k(a, b) = exp(-|a - b|^2 / (base * kernel_mults[u]))``,
    where ``base`` is the mean squared distance over the distinct pairs of the pooled batch, **detached** (a bandwidth
    that follows the features would let them shrink the loss by spreading out rather than aligning). The default
    multipliers span a factor of 16 geometrically around ``base`` (DAN's family of bandwidths ``2^k``). Averaging rather
    than summing the kernels keeps the loss in ``[0, 2]`` whatever their number, so its weight in the total loss does
    not depend on ``len(kernel_mults)``. ``base`` is computed in ``O(n d)`` from the pooled variance; if every pooled
    row is the same point, the loss is 0.

    ``estimator="biased"`` (default) is the V-statistic over all ``(n + m)^2`` pairs (Gretton et al., JMLR 2012): always
    ``>= 0``, exactly 0 up to round-off for identical batches, ``O((n + m)^2 d)``, and the batches may differ in size.
    ``estimator="linear"`` is DAN's linear-time unbiased estimate (Long et al., section 3): the first
    ``2 floor(k / 2)`` rows of each batch, ``k = min(n, m)``, form quad-tuples ``(x_{2i-1}, x_{2i}, y_{2i-1}, y_{2i})``;
    it is ``O(k d)`` but noisier and can be negative. Both are differentiable in both inputs.
    """
    _check_pair(source, target, "mk_mmd_loss", min_rows=2)
    mults = _kernel_mults(kernel_mults)
    if estimator not in MMD_ESTIMATORS:
        raise ValueError(f"mk_mmd_loss: unknown estimator {estimator!r}; choose one of {MMD_ESTIMATORS}")
    pooled = torch.cat([source, target])
    # The kernels are translation invariant: centring first reduces cancellation in |a|^2 + |b|^2 - 2 a.b.
    pooled = pooled - pooled.detach().mean(dim=0, keepdim=True)
    with torch.no_grad():
        # sum over ordered pairs i != j of |z_i - z_j|^2 = 2 N sum_i |z_i - mean|^2; divided by N (N - 1) pairs
        base = 2.0 * pooled.pow(2).sum() / (pooled.shape[0] - 1)
        # all rows equal: base and every distance are 0; a positive width makes every kernel value 1 and the loss 0
        widths = (base * pooled.new_tensor(mults)).clamp_min(torch.finfo(pooled.dtype).tiny)
    n = source.shape[0]
    if estimator == "biased":
        sq = pooled.pow(2).sum(dim=1)
        d2 = (sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T).clamp_min(0.0)
        d2 = d2.masked_fill(torch.eye(d2.shape[0], dtype=torch.bool, device=d2.device), 0.0)  # exact 0 for i == j
        k = torch.exp(-d2[None] / widths[:, None, None]).mean(dim=0)
        return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()
    half = min(n, target.shape[0]) // 2
    xs, ys = pooled[:n], pooled[n:]
    x1, x2 = xs[0 : 2 * half : 2], xs[1 : 2 * half : 2]
    y1, y2 = ys[0 : 2 * half : 2], ys[1 : 2 * half : 2]

    def kernel(a: Tensor, b: Tensor) -> Tensor:  # row-wise k(a_i, b_i), averaged over the kernels
        return torch.exp(-(a - b).pow(2).sum(dim=1)[None] / widths[:, None]).mean(dim=0)

    return (kernel(x1, x2) + kernel(y1, y2) - kernel(x1, y2) - kernel(x2, y1)).mean()


def _kernel_mults(kernel_mults: Sequence[float]) -> list[float]:
    try:
        mults = [float(m) for m in kernel_mults]
    except (TypeError, ValueError):
        raise ValueError(f"mk_mmd_loss: kernel_mults must be a sequence of numbers, got {kernel_mults!r}") from None
    if not mults or not all(math.isfinite(m) and m > 0 for m in mults):
        raise ValueError(f"mk_mmd_loss: kernel_mults must be non-empty, positive and finite, got {kernel_mults!r}")
    return mults


# ---------------------------------------------------------------------------------------------------------------- #
# SimCLR


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent loss for ``N`` positive pairs ``(z1[i], z2[i])``, averaged over all ``2N`` anchors.

    Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020, eq. 1. Similarities are cosine similarities divided by ``temperature``; each of the ``2N`` views is an
    anchor whose positive is its partner view and whose negatives are the other ``2N - 2`` views (its similarity with
    itself is excluded from the softmax). With ``N = 1`` there are no negatives and the loss is 0. Rows with zero norm
    are treated as zero vectors (cosine similarity 0), not NaN.
    """
    _check_pair(z1, z2, "nt_xent_loss", min_rows=1)
    if z1.shape[0] != z2.shape[0]:
        raise ValueError(f"nt_xent_loss: z1 and z2 must hold the same number of pairs, got {z1.shape} and {z2.shape}")
    t = _finite_float(temperature, "nt_xent_loss", "temperature")
    if t <= 0:
        raise ValueError(f"nt_xent_loss: temperature must be > 0, got {temperature!r}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / t
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def simclr_augment(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    hflip: bool = False,
    brightness: float = 0.4,
    contrast: float = 0.4,
    noise_std: float = 0.05,
) -> Tensor:
    """One random SimCLR-style view of each image in a batch ``(N, C, H, W)`` of normalised float images.

    The augmentation family of Chen et al., ICML 2020 (section 3 and appendix A), reduced to what suits small
    normalised tensors, applied per sample in one vectorised pass:

    1. random resized crop: a window covering a fraction ``U(scale)`` of the image area, aspect ratio log-uniform in
       ``ratio`` (each side capped at the full image), placed uniformly inside the image and resampled bilinearly to
       ``H x W`` (``affine_grid``/``grid_sample``, one affine matrix per sample);
    2. horizontal flip with probability 1/2, **off by default**: digits and characters are not mirror-invariant;
    3. brightness and contrast jitter in normalised units: ``(x - mean) * c + mean + b`` with ``b ~ U(-brightness,
       brightness)``, ``c ~ U(max(0, 1 - contrast), 1 + contrast)`` and ``mean`` the image's mean over all channels
       and pixels (an additive offset, because multiplying normalised values would not brighten);
    4. additive Gaussian noise of standard deviation ``noise_std``.

    Every random number is drawn from ``generator`` (or torch's global generator when ``None``) in a fixed order, so a
    seeded generator gives the same views; they are drawn on the generator's device and moved to ``x``'s. Returns a
    new tensor of ``x``'s shape, dtype and device; no gradient is meant to flow through it.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"simclr_augment: x must be a float (N, C, H, W) tensor, got {got}")
    lo, hi = _range(scale, "scale")
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"simclr_augment: scale must satisfy 0 < min <= max <= 1, got {scale!r}")
    r_lo, r_hi = _range(ratio, "ratio")
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"simclr_augment: ratio must satisfy 0 < min <= max, got {ratio!r}")
    if not isinstance(hflip, bool):
        raise ValueError(f"simclr_augment: hflip must be True or False, got {hflip!r}")
    jitter = {}
    for name, value in (("brightness", brightness), ("contrast", contrast), ("noise_std", noise_std)):
        jitter[name] = _finite_float(value, "simclr_augment", name)
        if jitter[name] < 0:
            raise ValueError(f"simclr_augment: {name} must be >= 0, got {value!r}")

    n = x.shape[0]
    device = generator.device if generator is not None else x.device
    u = torch.rand(n, 7, generator=generator, device=device, dtype=torch.float64).to(x.device)
    area = lo + (hi - lo) * u[:, 0]
    aspect = torch.exp(math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[:, 1])
    # window sides as fractions of the image; in affine_grid's [-1, 1] coordinates the window's half-extent is the
    # fraction itself and its centre may move by up to 1 - fraction while staying inside the image
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2.0 * u[:, 2] - 1.0) * (1.0 - w)
    cy = (2.0 * u[:, 3] - 1.0) * (1.0 - h)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if hflip else torch.ones_like(w)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * flip, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    b = (2.0 * u[:, 5] - 1.0) * jitter["brightness"]
    c = max(0.0, 1.0 - jitter["contrast"]) + (1.0 + jitter["contrast"] - max(0.0, 1.0 - jitter["contrast"])) * u[:, 6]
    b, c = b.to(x.dtype)[:, None, None, None], c.to(x.dtype)[:, None, None, None]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean + b
    if jitter["noise_std"] > 0:
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        out = out + jitter["noise_std"] * noise
    return out


def _range(value: tuple[float, float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"simclr_augment: {name} must be a (min, max) pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"simclr_augment: {name} must be finite, got {value!r}")
    return lo, hi


def _finite_float(value: float, fn: str, name: str) -> float:
    """``value`` as a finite float, or a ValueError naming ``fn``, ``name`` and the value."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}")
    return out


def _check_pair(a: Tensor, b: Tensor, fn: str, min_rows: int) -> None:
    """Both inputs are 2-D floating tensors with the same number of columns and at least ``min_rows`` rows."""
    for name, t in (("first input", a), ("second input", b)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{fn}: the {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2 or not t.is_floating_point():
            raise ValueError(
                f"{fn}: the {name} must be a 2-D float (rows, dims) tensor, got {t.dtype} {tuple(t.shape)}"
            )
        if t.shape[0] < min_rows or t.shape[1] < 1:
            raise ValueError(
                f"{fn}: the {name} needs at least {min_rows} row(s) and 1 column, got shape {tuple(t.shape)}"
            )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{fn}: both inputs need the same feature dimension, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
