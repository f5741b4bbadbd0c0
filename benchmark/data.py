"""Image sets, fixed splits, seeded label subsets and preprocessing shared by every target and source dataset.

Contracts (tested in ``tests/test_targets.py``):

* A target's train/val/test split is fixed: it depends only on the target's own configuration (its ``split_seed``),
  never on the run seed, the strategy or the label budget.
* The label subset depends only on (target id, label budget, seed): ``label_subset`` derives its generator from a
  hash of those three values, so a transfer run and its from-scratch baseline train on the same examples.
* Preprocessing (size, channels, normalisation) belongs to the *source* and is applied identically to both runs of
  a pair; in-memory image sets are preprocessed once as one tensor operation, not per batch.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler, TensorDataset

log = logging.getLogger(__name__)


def seed_hash(*parts: object) -> int:
    """A 63-bit seed derived from names and numbers, stable across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ImageSet(Dataset):
    """A labelled image collection. Items are ``(image, label)`` with ``image`` a float tensor in [0, 1], C×H×W.

    ``labels`` is available without decoding any image, so subsets and class counts are cheap.
    """

    labels: np.ndarray

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        raise NotImplementedError


class TensorImageSet(ImageSet):
    """Images held in memory as one ``N×C×H×W`` float tensor (bundled and procedural data)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray | Sequence[int]):
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected N×C×H×W images and N labels, got {tuple(images.shape)} and {len(labels)}")
        self.images = images.float()
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> TensorImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return TensorImageSet(self.images[torch.from_numpy(idx)], self.labels[idx])


class FileImageSet(ImageSet):
    """Images decoded from files on demand (ImageFolder trees and other datasets on disk).

    With ``size`` set (``Preprocessing.apply`` sets the source's input size), each file is decoded and resized by
    Pillow straight to ``size × size`` and returned as a ``uint8`` tensor: a 4000-px photo never becomes a float
    tensor at full resolution (48 MB) only to be shrunk to 224 px, and JPEGs are decoded at a reduced scale
    (``Image.draft``) when that is still larger than the target size. Without ``size`` items are float in [0, 1]
    at the file's own size.
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray | Sequence[int], mode: str = "RGB",
                 size: int | None = None, interpolation: str = "bilinear"):  # fmt: skip
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode = mode
        self.size = size
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image  # Pillow is needed only by datasets on disk

        with Image.open(self.paths[i]) as img:
            if self.size is None:
                arr = np.asarray(img.convert(self.mode), dtype=np.float32) / 255.0
            else:
                img.draft(self.mode, (self.size, self.size))  # JPEG: decode at 1/2, 1/4, 1/8 scale when large
                img = img.convert(self.mode).resize((self.size, self.size), PIL_RESAMPLE[self.interpolation]())
                arr = np.array(img, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), int(self.labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> FileImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return FileImageSet([self.paths[i] for i in idx], self.labels[idx], self.mode, self.size, self.interpolation)

    def at_size(self, size: int, interpolation: str) -> FileImageSet:
        """The same files, decoded and resized by Pillow to ``size × size`` (uint8 items)."""
        return FileImageSet(self.paths, self.labels, self.mode, size, interpolation)


def _pil(name: str):
    def resample():
        from PIL import Image

        return getattr(Image.Resampling, name)

    return resample


PIL_RESAMPLE = {"bilinear": _pil("BILINEAR"), "bicubic": _pil("BICUBIC"), "nearest": _pil("NEAREST")}
"""Pillow's filter for each ``Preprocessing.interpolation`` (Pillow imported only when files are decoded)."""

INTERPOLATIONS = tuple(PIL_RESAMPLE)
"""``Preprocessing.interpolation`` choices: the resize filters both Pillow and ``torch.nn.functional.interpolate``
have (timm's pretrained configs name bilinear or bicubic)."""


@dataclass
class Splits:
    """The fixed train/val/test split of one dataset, with its class names (index = label)."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train/val/test, stratified by class; ``fractions`` are the (val, test) shares.

    Every class keeps at least one training example when it has one; the result is sorted within each part.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = round(len(idx) * fractions[0])
        n_test = round(len(idx) * fractions[1])
        if n_val + n_test >= len(idx):  # tiny classes: keep one for training
            n_test = min(n_test, max(len(idx) - 1, 0))
            n_val = min(n_val, max(len(idx) - 1 - n_test, 0))
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val : n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test :].tolist()
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def label_subset(labels: np.ndarray, budget: int | None, seed: int, target_id: str) -> np.ndarray:
    """Indices of ``budget`` training examples per class (all when ``budget`` is None), sorted.

    The draw depends only on (target id, budget, seed), never on the strategy or source, so both runs of a
    transfer/baseline pair see the same examples. Raises when a class has fewer examples than the budget.
    """
    if budget is None:
        return np.arange(len(labels), dtype=np.int64)
    if budget < 1:
        raise ValueError(f"label_budget must be a positive number of examples per class or null, got {budget}")
    rng = np.random.default_rng(seed_hash("label_subset", target_id, budget, seed))
    chosen: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if len(idx) < budget:
            raise ValueError(
                f"label_budget={budget} per class exceeds the {len(idx)} training examples of class {cls} "
                f"in target {target_id!r}; choose label_budget <= {int(np.bincount(labels).min())} or null (all)"
            )
        chosen.append(rng.choice(idx, size=budget, replace=False))
    return np.sort(np.concatenate(chosen))


VALIDATION = ("full", "budget")
"""``validation=`` choices, the examples that score model selection and a sweep's objective (docs/tutorials/tuning.md):
``full`` is the target's whole validation split; ``budget`` holds at most ``label_budget`` of its examples per class,
so that choosing an epoch or a hyperparameter costs no more labels per class than training had."""


def validation_subset(labels: np.ndarray, mode: str, budget: int | None, seed: int, target_id: str) -> np.ndarray:
    """Indices of the validation examples that score selection (all of them for ``full``), sorted.

    ``budget`` draws at most ``budget`` examples per class from the validation split (a class with fewer keeps them
    all), seeded by (target id, budget, seed) under its own name: the draw is independent of the training subset's
    and disjoint from it by construction, since it comes from another split. ``budget=None`` (every training label)
    keeps the whole split.
    """
    if mode not in VALIDATION:
        raise ValueError(f"validation={mode!r} is not a valid choice; choose one of: {', '.join(VALIDATION)}")
    if mode == "full" or budget is None:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed_hash("validation_subset", target_id, budget, seed))
    chosen = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(idx, size=min(budget, len(idx)), replace=False))
    return np.sort(np.concatenate(chosen))


def unlabelled(images: ImageSet) -> ImageSet:
    """The same images with every label replaced by -1: what a strategy that must not read labels receives."""
    out = copy.copy(images)
    out.labels = np.full(len(images), -1, dtype=np.int64)
    return out


@dataclass(frozen=True)
class Preprocessing:
    """How images become model inputs: square resize (with ``interpolation``), channel count and per-channel
    normalisation.

    Owned by the source (its architecture and weights expect it) and shared by the pair's baseline. Hub and file
    sources take it from the model's own data config (``benchmark.data_config``); the bundled sources name it.
    """

    image_size: int = 32
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        # config lists become tuples of floats, so equal settings hash (and enter content keys) identically
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "in_chans", int(self.in_chans))
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need {self.in_chans} values (in_chans), got {self.mean} and {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"preprocessing.interpolation={self.interpolation!r} is not supported; choose one of "
                f"{', '.join(INTERPOLATIONS)}"
            )

    def tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocess a batch ``N×C×H×W``: float in [0, 1] or ``uint8`` in [0, 255] (files decoded by Pillow)."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        c = images.shape[1]
        if c != self.in_chans:
            if c == 1:
                images = images.expand(-1, self.in_chans, -1, -1)
            elif self.in_chans == 1:
                images = images.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"cannot convert {c}-channel images to {self.in_chans} channels")
        if images.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            if self.interpolation == "nearest":
                images = F.interpolate(images, size=size, mode="nearest")
            else:
                images = F.interpolate(images, size=size, mode=self.interpolation, antialias=True)
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1)
        return ((images - mean) / std).contiguous()

    def apply(self, images: ImageSet) -> Dataset:
        """A dataset of model inputs; in-memory sets are converted once, file sets lazily per item (decoded and
        resized by Pillow to ``image_size``, normalised last)."""
        if isinstance(images, TensorImageSet):
            chunks = [self.tensor(images.images[i : i + 1024]) for i in range(0, len(images), 1024)]
            x = torch.cat(chunks) if chunks else torch.empty(0, self.in_chans, self.image_size, self.image_size)
            return TensorDataset(x, torch.from_numpy(images.labels))
        if isinstance(images, FileImageSet):
            images = images.at_size(self.image_size, self.interpolation)
        return LazyPreprocessed(images, self)


class LazyPreprocessed(Dataset):
    """An image set preprocessed item by item (files on disk): what DataLoader workers parallelise."""

    def __init__(self, images: ImageSet, prep: Preprocessing):
        self.images, self.prep = images, prep

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.images[i]
        return self.prep.tensor(img.unsqueeze(0))[0], label


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from (seed, salt, epoch): the order of epoch k does not depend on how many
    epochs ran in this process, so a run resumed from a checkpoint sees exactly the batches it would have seen.
    Lightning calls ``set_epoch`` before every epoch."""

    def __init__(self, n: int, seed: int, salt: str = ""):
        self.n, self.seed, self.salt, self.epoch = n, seed, salt, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(seed_hash("loader_order", self.seed, self.salt, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())
