"""Classification datasets shipped as torchvision classes (MNIST, CIFAR10, SVHN, STL10, ...), by class name.

The test split is the dataset's official one; the validation split is carved from the official training split,
stratified and seeded by ``split_seed``, so it is fixed for a given configuration. Nothing is ever downloaded
unless ``download`` is true: benchmark jobs run in parallel and offline, so a missing dataset must be a clear
preflight error, not a silent (and racing) download.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data import ImageSet, Splits, TensorImageSet, stratified_split
from benchmark.targets.base import Target

log = logging.getLogger(__name__)


def classification_datasets() -> dict[str, type]:
    """torchvision dataset classes that look like classification sets with a selectable train/test split.

    Heuristic, from the constructor signature: it selects the split (``train`` or ``split``) and accepts a
    ``target_transform`` (or ``**kwargs``), and is not a video dataset (``frames_per_clip``). A few detection or
    attribute sets (CelebA, Kitti...) pass the test; they fail at ``load`` because their labels are not class indices.
    """
    import torchvision.datasets as tvd
    from torchvision.datasets.vision import VisionDataset

    out = {}
    for name in tvd.__all__:
        cls = getattr(tvd, name, None)
        if not (isinstance(cls, type) and issubclass(cls, VisionDataset)):
            continue
        params = inspect.signature(cls.__init__).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if (
            ("train" in params or "split" in params)
            and ("target_transform" in params or takes_kwargs)
            and "frames_per_clip" not in params
        ):
            out[name] = cls
    return out


class TorchvisionDataset(Target):
    """A torchvision classification dataset stored under ``root`` (torchvision's own folder layout below it).

    ``name`` is the torchvision class name (``MNIST``, ``FashionMNIST``, ``CIFAR10``, ``SVHN``, ``STL10``...).
    Constructors that take ``train: bool`` get ``train=True/False``; those that take ``split: str`` get
    ``train_split``/``test_split`` (e.g. ImageNet has no labelled test split: use ``test_split: val``).
    ``kwargs`` are passed to the constructor unchanged (e.g. ``{split: digits}`` for EMNIST).

    Datasets that hold their images as one array (``.data``: MNIST, CIFAR, SVHN, STL10, USPS) become an in-memory
    ``TensorImageSet`` in one vectorised conversion; others are decoded lazily per item, converted to RGB.
    """

    def __init__(
        self,
        name: str,
        root: str | Path = "data",
        download: bool = False,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        train_split: str = "train",
        test_split: str = "test",
        kwargs: Mapping[str, Any] | None = None,
    ):
        known = classification_datasets()
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
            close += [k for k in known if k.lower() == name.lower() and k not in close]
            raise ValueError(
                f"unknown torchvision classification dataset {name!r}; did you mean {close}? "
                f"Known: {', '.join(sorted(known))}"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.name = name
        self.cls = known[name]
        self.root = Path(root).expanduser().absolute()
        self.download = download
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.train_split = train_split
        self.test_split = test_split
        self.kwargs = dict(kwargs or {})
        self._datasets: dict[bool, Any] = {}  # constructed once, shared by problems() and load()

    def problems(self) -> list[str]:
        """Missing or corrupted files when ``download`` is false (checked by torchvision, nothing is fetched)."""
        if self.download:
            return []  # cannot be checked without downloading
        try:
            self._dataset(train=True)
            self._dataset(train=False)
        except (FileNotFoundError, ValueError) as err:
            return [str(err)]
        return []

    def load(self) -> Splits:
        train_ds, test_ds = self._dataset(train=True), self._dataset(train=False)
        train_all, test = _image_set(train_ds, self.name), _image_set(test_ds, self.name)
        n_classes = int(max(train_all.labels.max(), test.labels.max())) + 1
        classes = [str(c) for c in getattr(train_ds, "classes", None) or []]
        if len(classes) < n_classes:
            classes = [str(i) for i in range(n_classes)]
        train, val, _ = stratified_split(train_all.labels, (self.val_fraction, 0.0), self.split_seed)
        return Splits(train_all.subset(train), train_all.subset(val), test, classes)

    def _dataset(self, train: bool) -> Any:
        if train in self._datasets:
            return self._datasets[train]
        params = inspect.signature(self.cls.__init__).parameters
        kwargs = dict(self.kwargs)
        if "train" in params:
            kwargs["train"] = train
        else:
            kwargs["split"] = self.train_split if train else self.test_split
        if "download" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs["download"] = self.download
        try:
            ds = self.cls(root=str(self.root), **kwargs)
        except (RuntimeError, FileNotFoundError) as err:
            if self.download:
                raise RuntimeError(f"could not download torchvision {self.name} into {self.root}: {err}") from err
            raise FileNotFoundError(
                f"torchvision {self.name} files not found or corrupted under {self.root} ({err}); set "
                f"target.download=true to download them there, or point target.root at a folder that holds them"
            ) from err
        self._datasets[train] = ds
        return ds


class _DatasetImages(ImageSet):
    """Lazy view of a torchvision dataset whose images are not one array; items are decoded and made RGB."""

    def __init__(self, dataset: Any, indices: np.ndarray, labels: np.ndarray):
        self.dataset, self.indices, self.labels = dataset, indices, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = self.dataset[int(self.indices[i])][0]
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), int(self.labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> _DatasetImages:
        idx = np.asarray(indices, dtype=np.int64)
        return _DatasetImages(self.dataset, self.indices[idx], self.labels[idx])


def _labels(ds: Any, name: str) -> np.ndarray:
    """Integer labels without decoding images where the dataset keeps them as an attribute."""
    for attr in ("targets", "labels", "_labels"):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == len(ds):
            labels = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values)
            break
    else:
        samples = getattr(ds, "_samples", None) or getattr(ds, "samples", None)
        if samples is not None and len(samples) == len(ds):
            labels = np.asarray([s[1] for s in samples])
        else:
            log.info("torchvision %s keeps no label array; reading %d items to collect labels", name, len(ds))
            labels = np.asarray([ds[i][1] for i in range(len(ds))])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
        raise ValueError(
            f"torchvision {name} does not label images with class indices (got {labels.dtype} array of shape "
            f"{labels.shape}); only classification datasets can be targets"
        )
    return labels.astype(np.int64)


def _image_set(ds: Any, name: str) -> ImageSet:
    labels = _labels(ds, name)
    data = getattr(ds, "data", None)
    if isinstance(data, np.ndarray | torch.Tensor) and data.ndim in (3, 4) and len(data) == len(labels):
        x = torch.as_tensor(data)
        if x.ndim == 3:  # N×H×W grey (MNIST, USPS)
            x = x.unsqueeze(1)
        elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # N×H×W×C (CIFAR)
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] in (1, 3):  # N×C×H×W now (SVHN and STL10 already were)
            x = x.contiguous()  # permute in uint8, before the 4× larger float copy
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            if x.numel() and (x.min() < 0 or x.max() > 1):
                raise ValueError(f"torchvision {name} images are not uint8 or floats in [0, 1]")
            return TensorImageSet(x, labels)
    return _DatasetImages(ds, np.arange(len(labels)), labels)
