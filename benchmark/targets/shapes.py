"""Procedural geometric shapes and textures: a source unrelated to digits, generated in milliseconds.

Five classes are local shapes (where the object is and what outline it has) and five are global textures (how
intensity oscillates across the whole image), so a network pretrained here learns edges, corners and frequencies
but nothing about digit strokes: the "unrelated source" arm of a negative-transfer study.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.data import Splits, TensorImageSet, seed_hash, stratified_split
from benchmark.targets.base import Target

CLASSES = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "diagonal_stripes",
    "dots",
)

SUPERSAMPLE = 2
"""Shapes are drawn at twice the resolution and area-averaged, so edges are anti-aliased like real images."""


class Shapes(Target):
    """``n_per_class`` images of each of ``CLASSES``, 1×``resolution``×``resolution``, values in [0, 1].

    Per image: random position and size (shapes), random frequency and phase (textures), a small random rotation
    (±15°, so horizontal/vertical/diagonal stay distinct), random foreground and background levels of either
    polarity with a contrast of at least 0.3, and Gaussian pixel noise of std up to 0.08. Images depend only on
    (``n_per_class``, ``resolution``, ``seed``); the split only on ``split_seed`` and the fractions.
    """

    def __init__(
        self,
        resolution: int = 32,
        n_per_class: int = 300,
        seed: int = 0,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ):
        if not 8 <= resolution <= 512:
            raise ValueError(f"resolution must be between 8 and 512 pixels, got {resolution}")
        if n_per_class < 3:
            raise ValueError(f"n_per_class must be >= 3 (one each for train, val and test), got {n_per_class}")
        if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction} and "
                f"{test_fraction}"
            )
        self.resolution = resolution
        self.n_per_class = n_per_class
        self.seed = seed
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def load(self) -> Splits:
        labels = np.repeat(np.arange(len(CLASSES)), self.n_per_class)
        images = render_shapes(labels, self.resolution, np.random.default_rng(seed_hash("shapes", self.seed)))
        train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.split_seed)
        full = TensorImageSet(torch.from_numpy(images).unsqueeze(1), labels)
        return Splits(full.subset(train), full.subset(val), full.subset(test), list(CLASSES))


def render_shapes(labels: np.ndarray, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """``N×resolution×resolution`` float32 images of the classes in ``labels`` (indices into ``CLASSES``).

    Vectorised over images and pixels; the only Python loop is over the ten classes. Every parameter is drawn for
    every image in a fixed order, so an image depends on its index and the generator only, not on the class mix.
    """
    n, size = len(labels), resolution * SUPERSAMPLE
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
    y, x = axis[None, :, None], axis[None, None, :]  # y points down, as in image rows

    def draw(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=n).astype(np.float32)[:, None, None]

    angle = np.deg2rad(draw(-15.0, 15.0))
    cx, cy, radius = draw(-0.3, 0.3), draw(-0.3, 0.3), draw(0.3, 0.6)
    freq = draw(2.5, 5.0) * np.pi  # 2.5-5 cycles across the image: visible at 32 px, below Nyquist at 16 px
    phase_a, phase_b = draw(0.0, 2 * np.pi), draw(0.0, 2 * np.pi)
    diagonal_sign = np.where(draw(0.0, 1.0) < 0.5, -1.0, 1.0).astype(np.float32)
    dot_radius = draw(0.2, 0.35)
    low, high = draw(0.0, 0.35), draw(0.65, 1.0)
    flip = draw(0.0, 1.0) < 0.5
    fg, bg = np.where(flip, low, high), np.where(flip, high, low)
    noise_std = draw(0.0, 0.08)

    params = {"angle": angle, "cx": cx, "cy": cy, "r": radius, "freq": freq, "pa": phase_a, "pb": phase_b,
              "diagonal_sign": diagonal_sign, "dot_radius": dot_radius}  # fmt: skip
    mask = np.zeros((n, size, size), dtype=np.float32)
    for k, name in enumerate(CLASSES):
        i = np.flatnonzero(labels == k)
        if len(i) > 0:
            mask[i] = _mask(name, x, y, **{key: value[i] for key, value in params.items()})
    mask = mask.reshape(n, resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(2, 4))
    images = bg + (fg - bg) * mask + noise_std * rng.standard_normal(mask.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def _mask(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    angle: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    r: np.ndarray,
    freq: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    diagonal_sign: np.ndarray,
    dot_radius: np.ndarray,
) -> np.ndarray:
    """Binary masks of one class: ``x``/``y`` are the pixel-centre axes, the rest per-image ``m×1×1`` parameters."""
    cos, sin = np.cos(angle), np.sin(angle)
    if name in ("disc", "square", "triangle", "ring", "cross"):  # shape-centred, rotated coordinates
        u = cos * (x - cx) + sin * (y - cy)
        v = -sin * (x - cx) + cos * (y - cy)
    else:  # image-centred, rotated coordinates for textures
        u = cos * x + sin * y
        v = -sin * x + cos * y
    if name == "disc":
        inside = u**2 + v**2 < r**2
    elif name == "square":
        inside = np.maximum(np.abs(u), np.abs(v)) < 0.85 * r  # same area as a disc of radius r, roughly
    elif name == "triangle":  # equilateral, apex up: base at v = r/2, sides through the apex (0, -r)
        inside = (v < 0.5 * r) & (np.abs(u) < (v + r) / np.sqrt(3.0))
    elif name == "ring":
        inside = (u**2 + v**2 < r**2) & (u**2 + v**2 > (0.55 * r) ** 2)
    elif name == "cross":
        arm = 0.3 * r
        inside = ((np.abs(u) < arm) & (np.abs(v) < r)) | ((np.abs(v) < arm) & (np.abs(u) < r))
    elif name == "horizontal_stripes":
        inside = np.sin(freq * v + pa) > 0
    elif name == "vertical_stripes":
        inside = np.sin(freq * u + pa) > 0
    elif name == "checkerboard":
        inside = np.sin(freq * u + pa) * np.sin(freq * v + pb) > 0
    elif name == "diagonal_stripes":
        inside = np.sin(freq * (u + diagonal_sign * v) / np.sqrt(2.0) + pa) > 0
    elif name == "dots":  # a lattice of discs, one per cell of the stripe period
        cell_u = np.mod(freq * u + pa, 2 * np.pi) / (2 * np.pi) - 0.5
        cell_v = np.mod(freq * v + pb, 2 * np.pi) / (2 * np.pi) - 0.5
        inside = cell_u**2 + cell_v**2 < dot_radius**2
    else:
        raise ValueError(f"unknown shape class {name!r}; choose one of {', '.join(CLASSES)}")
    return inside.astype(np.float32)
