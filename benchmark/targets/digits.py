"""scikit-learn's bundled 8×8 handwritten digits, optionally under a deterministic domain shift.

The 1,797 images ship inside scikit-learn, so this real-data target needs no download and loads in milliseconds.
Each pixel counts the inked cells of a 4×4 block of the original 32×32 bitmap (0-16); we divide by 16, which keeps
the ink bright on a dark background, as in the synthetic sources.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import Splits, TensorImageSet, seed_hash
from benchmark.targets.base import Target

SHIFTS = ("none", "invert", "rotate", "noise", "blur")
"""Domain shifts of the same task. Every one is deterministic, so the shifted target is a fixed dataset."""

DEFAULT_SEVERITY = {"rotate": 90.0, "noise": 0.25, "blur": 0.8}
"""Per-shift strength in the shift's own unit: degrees, noise std in [0, 1] intensity units, blur sigma in pixels.

90° is an exact pixel permutation (no interpolation blur) that still keeps 6 and 9 apart (180° would not);
std 0.25 leaves the digits legible to a person; sigma 0.8 px merges neighbouring strokes at 8×8 without erasing them.
"""

N_VAL = 200
N_TEST = 300
"""Fixed split sizes: 1,797 - 200 - 300 = 1,297 training images, stratified by class."""


def split_by_counts(
    labels: np.ndarray, n_val: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices with *exact* val and test totals, each part sorted.

    ``stratified_split`` rounds per class, so its totals drift by a few examples; a benchmark that promises
    "200 validation images" needs exact counts. Each class gets its proportional share of ``n_val`` and ``n_test``,
    rounded by the largest-remainder method (ties go to the lower class index), so totals are exact and per-class
    shares differ from proportional by less than one example.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if n_val < 0 or n_test < 0 or n_val + n_test >= len(labels):
        raise ValueError(f"need 0 <= n_val, n_test and n_val + n_test < {len(labels)}, got {n_val} and {n_test}")
    val_counts = _largest_remainder(counts, n_val)
    test_counts = _largest_remainder(counts, n_test)
    if np.any(val_counts + test_counts >= counts):
        raise ValueError(f"val {n_val} + test {n_test} leave some class of {counts.tolist()} without training data")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls, n_v, n_t in zip(classes, val_counts, test_counts, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        parts[1] += idx[:n_v].tolist()
        parts[2] += idx[n_v : n_v + n_t].tolist()
        parts[0] += idx[n_v + n_t :].tolist()
    train, val, test = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    return train, val, test


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    quota = counts * total / counts.sum()
    out = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - out), kind="stable")  # stable: ties go to the lower class index
    out[order[: total - out.sum()]] += 1
    return out


class Digits(Target):
    """The 10-class 8×8 digits task; ``shift`` turns it into a domain-shifted copy of the same task.

    Shifts (``severity`` in the shift's own unit, ``None`` = the default in ``DEFAULT_SEVERITY``):

    * ``none``: the original images.
    * ``invert``: ``1 - x``, dark ink on a bright background.
    * ``rotate``: every image rotated counter-clockwise by ``severity`` degrees; multiples of 90 are exact.
    * ``noise``: additive Gaussian noise of std ``severity``, clipped to [0, 1]. The noise is drawn once per image
      from a generator seeded by the shift name, so it is identical in every run and for every ``split_seed``.
    * ``blur``: Gaussian blur of sigma ``severity`` pixels.

    The shift is applied to all three splits (it defines the target domain), before splitting, so an image's shifted
    version does not depend on which split it lands in. The fixed split is 1,297 / 200 / 300 images.
    """

    def __init__(self, shift: str = "none", severity: float | None = None, split_seed: int = 0):
        if shift not in SHIFTS:
            raise ValueError(f"unknown digits shift {shift!r}; choose one of {', '.join(SHIFTS)}")
        if severity is not None and shift not in DEFAULT_SEVERITY:
            raise ValueError(
                f"severity={severity} has no effect for shift={shift!r}; it applies to {', '.join(DEFAULT_SEVERITY)}"
            )
        if severity is not None and (not math.isfinite(severity) or (shift != "rotate" and severity <= 0)):
            raise ValueError(f"severity for shift={shift!r} must be a finite positive number, got {severity}")
        self.shift = shift
        self.severity = DEFAULT_SEVERITY.get(shift) if severity is None else float(severity)
        self.split_seed = split_seed

    def load(self) -> Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # N×1×8×8 in [0, 1]
        labels = np.asarray(bunch.target, dtype=np.int64)
        images = apply_shift(images, self.shift, self.severity)
        train, val, test = split_by_counts(labels, N_VAL, N_TEST, seed_hash("split", "digits", self.split_seed))
        full = TensorImageSet(images, labels)
        return Splits(full.subset(train), full.subset(val), full.subset(test), [str(d) for d in range(10)])


def apply_shift(images: torch.Tensor, shift: str, severity: float | None) -> torch.Tensor:
    """Apply one of ``SHIFTS`` to an ``N×C×H×W`` batch in [0, 1]; the result stays in [0, 1]."""
    if shift == "none":
        return images
    if shift == "invert":
        return 1.0 - images
    if severity is None:
        raise ValueError(f"shift {shift!r} needs a severity")
    if shift == "rotate":
        return _rotate(images, severity)
    if shift == "noise":
        gen = torch.Generator().manual_seed(seed_hash("digits_shift", shift))
        noise = torch.randn(images.shape, generator=gen, dtype=images.dtype)
        return (images + severity * noise).clamp_(0.0, 1.0)
    if shift == "blur":
        return _gaussian_blur(images, severity)
    raise ValueError(f"unknown digits shift {shift!r}; choose one of {', '.join(SHIFTS)}")


def _rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    if degrees % 90 == 0:  # exact: a pixel permutation, no interpolation
        return torch.rot90(images, k=int(degrees // 90) % 4, dims=(2, 3))
    rad = math.radians(degrees)
    cos, sin = math.cos(rad), math.sin(rad)
    # affine_grid maps output to input coordinates (x right, y down): rotating the sampling grid clockwise
    # rotates the picture counter-clockwise, matching torch.rot90 for multiples of 90.
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0.0, 1.0)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    # Zero padding is the background colour, so the border does not darken or brighten the digit.
    out = F.conv2d(images, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)
    return out.clamp_(0.0, 1.0)
