"""Training augmentation (``augment=none|light|timm``): random views of the training split only, identical for a
transfer run and its baseline.

Every augmented example is drawn from a generator seeded by (run seed, salt, epoch, index), never from a global
random state: the two runs of a pair see the same augmented batches, a resumed run repeats them, and DataLoader
workers change nothing. The sampler hands the epoch to the dataset with each index (``EpochKeys``), because worker
processes never see ``set_epoch``.

Validation and test images are never augmented, and neither are cached frozen features: a probe trained on features
computed once cannot see new views, so with augmentation a frozen backbone runs on every batch instead
(``benchmark.recipe``).

Policies:

* ``none``: the images as preprocessed (the default; the bundled data's numbers are unchanged).
* ``light``: a random resized crop (area share in [``min_scale``, 1], aspect ratio in [3/4, 4/3]) and a horizontal
  flip with probability ``hflip``, on the preprocessed tensor (geometry only; normalisation is unaffected).
* ``timm``: timm's training transform (``timm.data.create_transform(is_training=True)``: random resized crop, flip,
  ``auto_augment`` such as RandAugment, random erasing with ``re_prob``) at the source's size, mean, std and
  interpolation, on the image rebuilt from its preprocessed tensor.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from benchmark.data import EpochShuffle, Preprocessing, seed_hash

POLICIES = ("none", "light", "timm")


@dataclass(frozen=True)
class Augment:
    """A training augmentation policy and its settings (``conf/augment/<policy>.yaml``); part of the run key unless
    ``none``."""

    policy: str = "none"
    min_scale: float = 0.5  # smallest share of the image area a random crop keeps
    hflip: float = 0.5  # probability of a horizontal flip (0.0 for data whose orientation matters: digits, text)
    auto_augment: str | None = None  # timm policy string, e.g. rand-m9-mstd0.5-inc1 (RandAugment); timm only
    re_prob: float = 0.0  # random-erasing probability; timm only

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"augment={self.policy!r} is not a policy; choose one of {', '.join(POLICIES)}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"augment.min_scale={self.min_scale} must be in (0, 1]")
        for name in ("hflip", "re_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name}={getattr(self, name)} must be a probability in [0, 1]")

    @property
    def active(self) -> bool:
        return self.policy != "none"

    def wrap(self, train: Dataset, prep: Preprocessing, seed: int, salt: str = "") -> Dataset:
        """The training set with this policy applied per example (``train`` itself for ``none``)."""
        return AugmentedSet(train, self, prep, seed, salt) if self.active else train


class EpochKeys(EpochShuffle):
    """``EpochShuffle``'s order, each index paired with its epoch: ``(epoch, index)``."""

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, i) for i in super().__iter__())


class AugmentedSet(Dataset):
    """A preprocessed training set whose examples are augmented on the fly, keyed by ``(epoch, index)``."""

    def __init__(self, data: Dataset, augment: Augment, prep: Preprocessing, seed: int, salt: str = ""):
        self.data, self.augment, self.prep, self.seed, self.salt = data, augment, prep, seed, salt
        self._timm = None

    def __len__(self) -> int:
        return len(self.data)

    def sampler(self, seed: int, salt: str = "") -> EpochKeys:
        return EpochKeys(len(self), seed, salt)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, int]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        x, y = self.data[i]
        return self.view(x, epoch, i), int(y)

    def __getitems__(self, keys: list) -> tuple[torch.Tensor, torch.Tensor]:
        keys = [k if isinstance(k, tuple) else (0, k) for k in keys]
        if isinstance(self.data, TensorDataset):
            idx = torch.as_tensor([i for _, i in keys])
            xs, ys = self.data.tensors[0][idx], self.data.tensors[1][idx]
        else:
            items = [self.data[i] for _, i in keys]
            xs, ys = torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])
        views = [self.view(x, epoch, i) for x, (epoch, i) in zip(xs, keys, strict=True)]
        return torch.stack(views), ys

    def view(self, x: torch.Tensor, epoch: int, i: int) -> torch.Tensor:
        """The augmented view of example ``i`` (a preprocessed ``C×H×W`` tensor) in ``epoch``."""
        s = seed_hash("augment", self.seed, self.salt, epoch, i)
        if self.augment.policy == "light":
            return _light(x, self.augment, torch.Generator().manual_seed(s % 2**63))
        return self._timm_view(x, s)

    def _timm_view(self, x: torch.Tensor, s: int) -> torch.Tensor:
        from PIL import Image  # only the timm policy works on images
        from timm.data import create_transform

        if self._timm is None:
            a, p = self.augment, self.prep
            self._timm = create_transform((p.in_chans, p.image_size, p.image_size), is_training=True,
                                          scale=(a.min_scale, 1.0), hflip=a.hflip, auto_augment=a.auto_augment,
                                          re_prob=a.re_prob, interpolation=p.interpolation, mean=p.mean,
                                          std=p.std)  # fmt: skip
        mean = torch.tensor(self.prep.mean).view(-1, 1, 1)
        std = torch.tensor(self.prep.std).view(-1, 1, 1)
        pixels = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        # timm's transforms draw from Python's and torch's global generators: seed both for this one example
        state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(s)
                np.random.seed(s % 2**32)
                torch.manual_seed(s % 2**63)
                return self._timm(image)
        finally:
            random.setstate(state)
            np.random.set_state(np_state)


def _light(x: torch.Tensor, augment: Augment, g: torch.Generator) -> torch.Tensor:
    """Random resized crop back to the input size, then a horizontal flip, drawn from ``g``."""
    _, h, w = x.shape
    u = torch.rand(5, generator=g).tolist()
    area = h * w * (augment.min_scale + (1.0 - augment.min_scale) * u[0])
    ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
    cw = min(w, max(1, round(math.sqrt(area * ratio))))
    ch = min(h, max(1, round(math.sqrt(area / ratio))))
    top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
    crop = x[:, top : top + ch, left : left + cw]
    if (ch, cw) != (h, w):
        crop = F.interpolate(crop.unsqueeze(0), size=(h, w), mode="bilinear", antialias=True)[0]
    return crop.flip(-1) if u[4] < augment.hflip else crop.contiguous()
