"""Files on disk at realistic sizes: Pillow decodes and resizes each image straight to the source's input size
(uint8, normalised last), the split memo is unaffected, and DataLoader workers are used for files."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.data import FileImageSet, Preprocessing
from benchmark.loaders import workers
from benchmark.targets.image_folder import ImageFolder


def _tree(root, n: int = 6, size: int = 300):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            smooth = np.kron(rng.integers(0, 255, (size // 50, size // 50, 3)), np.ones((50, 50, 1)))
            Image.fromarray(smooth.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def test_files_are_resized_by_pillow_to_the_source_size_and_normalised_last(tmp_path):
    splits = ImageFolder(_tree(tmp_path / "tree"), val_fraction=0.2, test_fraction=0.2).load()
    prep = Preprocessing(image_size=48, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), interpolation="bicubic")
    data = prep.apply(splits.train)
    raw, _ = data.images[0]
    assert raw.dtype == torch.uint8 and raw.shape == (3, 48, 48)  # never a full-size float tensor
    x, _ = data[0]
    assert x.dtype == torch.float32 and x.shape == (3, 48, 48)
    # the same picture as resizing the full-resolution float image in torch
    full, _ = splits.train[0]
    assert full.shape == (3, 300, 300) and splits.train.size is None  # the loaded split is untouched
    ref = prep.tensor(full.unsqueeze(0))[0]
    assert (x - ref).abs().mean() < 0.05 * (1 / 0.2)
    assert workers(data, 0) >= 1 and workers(data, 3) == 3


def test_greyscale_files_are_repeated_to_three_channels(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((400, 200), 128, np.uint8)).save(path)
    item, _ = FileImageSet([path], [0], mode="L", size=32)[0]
    assert item.shape == (1, 32, 32) and item.dtype == torch.uint8
    x = Preprocessing().tensor(item.unsqueeze(0))
    assert x.shape == (1, 3, 32, 32) and F.mse_loss(x, torch.zeros_like(x)) < 1e-3  # 128/255 ~ mean 0.5
