"""Characters rendered from the TrueType fonts bundled with matplotlib: a simulated source domain.

With the default ``charset`` ("0123456789") this is the *sim* side of a sim-to-real pair with the ``digits`` target:
same classes, printed instead of handwritten. With ten capital letters (``conf/target/synth_letters.yaml``) it is a
*partially related* source: the same rendering pipeline and image statistics, but a different task.

Pipeline: every (font, character) glyph is rasterised once at high resolution with FreeType (through Pillow, no
display needed), centred and scaled to fill the canvas the way the sklearn digits fill theirs; stroke-thickness
variants are precomputed on those few glyphs; then all samples are drawn in one batch with torch (random font,
thickness, rotation, scale, aspect, shear and translation via ``affine_grid``/``grid_sample``) and area-downsampled
to ``resolution``. Default ``resolution`` 8 equals the sklearn digits, so the domain gap is style, not resolution.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import Splits, TensorImageSet, seed_hash, stratified_split
from benchmark.targets.base import Target

log = logging.getLogger(__name__)

FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
)
"""Text fonts in matplotlib's ``mpl-data/fonts/ttf``. Listed, not globbed: the folder also holds symbol fonts
(cmex10, cmsy10, STIXSize*, STIXNonUni*), display subsets and LastResort, whose character maps claim digits and
letters but draw symbols or placeholder boxes."""

CANVAS_MIN = 64
"""Glyph raster size in pixels (at least 4× the output resolution), so rotation and dilation are applied before
the area downsampling and do not alias."""

FILL = 0.94
"""Share of the canvas the glyph's longer side fills before augmentation: the sklearn digits were size-normalised
to fill their 32×32 box, and ink touches nearly every border row."""

THICKNESS = (-3, 1, 3, 5, 7)
"""Stroke-thickness variants as max-pool kernel sizes on the canvas (negative = erosion, 1 = unchanged). At 64 px a
regular DejaVu stroke is about 8 px; handwritten 8×8 digits have strokes of 1-2 output pixels (8-16 canvas px),
so most variants thicken. Erosion stops at 3 because serif hairlines are only 2-3 px wide; dilation stops at
7 because wider kernels close the counters of bold 8s and 0s."""


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


class SynthDigits(Target):
    """``n_per_class`` rendered, randomly transformed images of each character in ``charset`` (class = character).

    The images depend only on (``charset``, ``n_per_class``, ``resolution``, ``max_rotation``, ``seed``); the split
    only on ``split_seed`` and the fractions. Fonts lacking a character of ``charset`` are left out.
    """

    def __init__(
        self,
        charset: str = "0123456789",
        n_per_class: int = 300,
        resolution: int = 8,
        max_rotation: float = 15.0,
        seed: int = 0,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ):
        if len(charset) < 2 or len(set(charset)) != len(charset) or any(c.isspace() for c in charset):
            raise ValueError(f"charset must hold at least 2 distinct non-space characters, got {charset!r}")
        if n_per_class < 3:
            raise ValueError(f"n_per_class must be >= 3 (one each for train, val and test), got {n_per_class}")
        if not 4 <= resolution <= 256:
            raise ValueError(f"resolution must be between 4 and 256 pixels, got {resolution}")
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(f"max_rotation must be between 0 and 180 degrees, got {max_rotation}")
        if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction} and "
                f"{test_fraction}"
            )
        self.charset = charset
        self.n_per_class = n_per_class
        self.resolution = resolution
        self.max_rotation = max_rotation
        self.seed = seed
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def problems(self) -> list[str]:
        missing = [f for f in FONT_FILES if not (font_dir() / f).is_file()]
        if len(missing) == len(FONT_FILES):
            return [f"none of matplotlib's bundled fonts were found in {font_dir()}"]
        return []

    def load(self) -> Splits:
        images = self.render()
        labels = np.repeat(np.arange(len(self.charset)), self.n_per_class)
        train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.split_seed)
        full = TensorImageSet(images, labels)
        return Splits(full.subset(train), full.subset(val), full.subset(test), list(self.charset))

    def render(self) -> torch.Tensor:
        """All images, ``(K·n_per_class)×1×resolution×resolution``, class-major (class k at ``k*n : (k+1)*n``)."""
        canvas = max(CANVAS_MIN, 4 * self.resolution)
        glyphs = thickness_variants(self.charset, canvas)  # V×F×K×S×S
        n_var, n_fonts, n_cls = glyphs.shape[:3]
        n = n_cls * self.n_per_class
        gen = torch.Generator().manual_seed(seed_hash("synth_digits", self.charset, self.seed))

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=gen)

        cls = torch.arange(n_cls).repeat_interleave(self.n_per_class)
        font = torch.randint(n_fonts, (n,), generator=gen)
        var = torch.randint(n_var, (n,), generator=gen)
        angle = uniform(-1.0, 1.0) * math.radians(self.max_rotation)
        scale = uniform(0.8, 1.05)  # overall size, relative to FILL
        aspect = torch.exp(uniform(-0.2, 0.2))  # width/height jitter: handwriting is narrower or wider than type
        shear = uniform(-0.2, 0.2)  # slant
        shift = torch.stack([uniform(-0.08, 0.08), uniform(-0.08, 0.08)], dim=1)  # in [-1, 1] image coordinates

        # Forward map glyph -> image: rotate(shear(scale(aspect))); affine_grid wants the inverse (image -> glyph).
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shr = torch.zeros(n, 2, 2)
        shr[:, 0, 0], shr[:, 0, 1], shr[:, 1, 1] = 1.0, shear, 1.0
        size = torch.diag_embed(torch.stack([scale * aspect, scale], -1))
        inv = torch.linalg.inv(rot @ shr @ size)
        theta = torch.cat([inv, -(inv @ shift.unsqueeze(-1))], dim=2)

        src = glyphs[var, font, cls].unsqueeze(1)  # n×1×S×S
        grid = F.affine_grid(theta, [n, 1, canvas, canvas], align_corners=False)
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = F.interpolate(out, size=(self.resolution, self.resolution), mode="area")
        # Full-contrast ink, like the sklearn digits (98% of them reach the maximum count of 16).
        return (out / out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)).clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=4)
def thickness_variants(charset: str, canvas: int) -> torch.Tensor:
    """``V×F×K×S×S`` glyph masks in [0, 1]: ``THICKNESS`` variants of every usable font and character.

    Cached (and shared, so never modified in place): rendering is the slow part and does not depend on the seed.
    """
    glyphs = render_glyphs(charset, canvas).unsqueeze(2)  # F×K×1×S×S
    flat = glyphs.flatten(0, 1)
    variants = []
    for k in THICKNESS:
        if k == 1:
            variants.append(flat)
        elif k > 1:
            variants.append(F.max_pool2d(flat, k, stride=1, padding=k // 2))
        else:
            variants.append(-F.max_pool2d(-flat, -k, stride=1, padding=-k // 2))
    return torch.stack(variants).view(len(THICKNESS), *glyphs.shape[:2], canvas, canvas)


def render_glyphs(charset: str, canvas: int) -> torch.Tensor:
    """``F×K×S×S`` glyphs, white on black, centred, the longer side of the ink box filling ``FILL`` of the canvas."""
    from matplotlib.ft2font import FT2Font
    from PIL import Image, ImageDraw, ImageFont

    fonts = []
    for name in FONT_FILES:
        path = font_dir() / name
        if not path.is_file():
            log.debug("font %s not found; skipping it", path)
            continue
        charmap = FT2Font(str(path)).get_charmap()
        if all(ord(c) in charmap for c in charset):
            fonts.append(path)
        else:
            log.debug("font %s lacks some of %r; skipping it", name, charset)
    if not fonts:
        raise ValueError(f"no font in {font_dir()} renders every character of {charset!r}; try ASCII letters/digits")

    box = FILL * canvas
    out = np.zeros((len(fonts), len(charset), canvas, canvas), dtype=np.float32)
    for i, path in enumerate(fonts):
        font = ImageFont.truetype(str(path), size=2 * canvas)  # ink height ≈ 1.4 canvas: always downsampled
        for j, char in enumerate(charset):
            left, top, right, bottom = font.getbbox(char)
            img = Image.new("L", (right - left + 8, bottom - top + 8))
            ImageDraw.Draw(img).text((4 - left, 4 - top), char, font=font, fill=255)
            ink = img.getbbox()
            if ink is None:
                raise ValueError(f"font {path.name} draws nothing for {char!r}")
            img = img.crop(ink)
            factor = box / max(img.size)
            w, h = max(1, round(img.size[0] * factor)), max(1, round(img.size[1] * factor))
            glyph = np.asarray(img.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
            y0, x0 = (canvas - h) // 2, (canvas - w) // 2
            out[i, j, y0 : y0 + h, x0 : x0 + w] = glyph
    return torch.from_numpy(out).clamp_(0.0, 1.0)
