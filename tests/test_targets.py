"""Target contracts, parametrized over conf/target/*.yaml, plus the specific behaviour of each target family.

Every target YAML is instantiated with Hydra and must honour the split and label-subset contracts of
``benchmark.data``. Targets that read files get a small tree written into a temporary folder (an image tree, or real
MNIST idx / CIFAR pickle files for torchvision), so everything runs offline and in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import random
import time
from collections.abc import Iterator
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import torch
from conftest import CONF, options
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from benchmark.data import FileImageSet, ImageSet, Splits, TensorImageSet, label_subset
from benchmark.targets.base import Target
from benchmark.targets.digits import SHIFTS, Digits
from benchmark.targets.image_folder import ImageFolder
from benchmark.targets.shapes import CLASSES, Shapes
from benchmark.targets.synth_digits import SynthDigits, thickness_variants
from benchmark.targets.torchvision_dataset import TorchvisionDataset

TARGETS = options("target")


# ---------------------------------------------------------------------------------------------- fixture data


def write_tree(root: Path, counts: dict[str, int], size: int = 8, seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` random RGB images each (empty folder for 0)."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx-ubyte file: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_torchvision_files(cls: type, root: Path, n_train_per_class: int = 12, n_test_per_class: int = 3) -> bool:
    """Real-format files for the MNIST and CIFAR families; False for datasets without an offline fixture."""
    import torchvision.datasets as tvd

    rng = np.random.default_rng(0)
    train_y = np.repeat(np.arange(10), n_train_per_class)
    test_y = np.repeat(np.arange(10), n_test_per_class)
    if issubclass(cls, tvd.MNIST) and cls.__init__ is tvd.MNIST.__init__:  # MNIST, FashionMNIST, KMNIST
        raw = root / cls.__name__ / "raw"
        raw.mkdir(parents=True)
        for prefix, y in (("train", train_y), ("t10k", test_y)):
            write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (len(y), 28, 28)))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        return True
    if issubclass(cls, tvd.CIFAR10):  # CIFAR10, CIFAR100
        folder = root / cls.base_folder
        folder.mkdir(parents=True)
        n_classes = 100 if issubclass(cls, tvd.CIFAR100) else 10
        batches = [(name, train_y[i :: len(cls.train_list)]) for i, (name, _) in enumerate(cls.train_list)]
        for name, y in [*batches, (cls.test_list[0][0], test_y)]:
            entry = {"data": rng.integers(0, 256, (len(y), 3 * 32 * 32), dtype=np.uint8), "labels": y.tolist()}
            (folder / name).write_bytes(pickle.dumps(entry))
        meta = {cls.meta["key"]: [f"class{i}" for i in range(n_classes)]}
        (folder / cls.meta["filename"]).write_bytes(pickle.dumps(meta))
        return True
    return False


@contextlib.contextmanager
def offline_torchvision() -> Iterator[None]:
    """CIFAR verifies the md5 of every batch; our fixture batches are real-format but not the real bytes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("torchvision.datasets.cifar.check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
        yield


def target_config(name: str, tmp: Path) -> DictConfig:
    """The YAML as shipped, with file-backed targets pointed at fixture data written under ``tmp``."""
    cfg = OmegaConf.load(CONF / "target" / f"{name}.yaml")
    cls = hydra.utils.get_class(cfg._target_)
    if issubclass(cls, ImageFolder):
        cfg.root = str(write_tree(tmp / "tree", {"cat": 10, "dog": 11, "emu": 12}))
    elif issubclass(cls, TorchvisionDataset):
        import torchvision.datasets as tvd

        if not write_torchvision_files(getattr(tvd, cfg.name), tmp):
            pytest.skip(f"no offline fixture files for torchvision {cfg.name}")
        cfg.root = str(tmp)
    return cfg


def build(cfg: DictConfig, global_seed: int) -> tuple[Target, Splits]:
    """Instantiate and load with the global RNGs in a given state: the result must not depend on it."""
    random.seed(global_seed)
    np.random.seed(global_seed)
    torch.manual_seed(global_seed)
    with offline_torchvision():
        target = hydra.utils.instantiate(cfg)
        return target, target.load()


# one worker runs this module and builds its module-scoped fixtures below once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_targets")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    """``name -> (target, splits, splits built again)``, built once per module: loading is the slow part."""
    cache: dict[str, tuple[Target, Splits, Splits]] = {}

    def get(name: str) -> tuple[Target, Splits, Splits]:
        if name not in cache:
            cfg = target_config(name, tmp_path_factory.mktemp(name))
            target, first = build(cfg, global_seed=1)
            _, second = build(cfg, global_seed=2)
            cache[name] = (target, first, second)
        return cache[name]

    return get


def keys(images: ImageSet) -> list[str]:
    """Identity of every item: its path for file sets, a hash of its pixels otherwise."""
    if isinstance(images, FileImageSet):
        return [str(p) for p in images.paths]
    if isinstance(images, TensorImageSet):
        return [hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images.images]
    return [hashlib.sha1(images[i][0].numpy().tobytes()).hexdigest() for i in range(len(images))]


def parts(splits: Splits) -> dict[str, ImageSet]:
    return {"train": splits.train, "val": splits.val, "test": splits.test}


# ---------------------------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("name", TARGETS)
def test_yaml_explains_itself(name: str) -> None:
    text = (CONF / "target" / f"{name}.yaml").read_text()
    assert text.startswith("# "), "first line must be a comment saying what the target is (STYLE R8)"
    assert OmegaConf.create(text).get("_target_"), "a target YAML names its class in _target_"


@pytest.mark.parametrize("name", TARGETS)
def test_split_is_disjoint_and_deterministic(name: str, loaded) -> None:
    _, first, second = loaded(name)
    ids = {part: keys(images) for part, images in parts(first).items()}
    assert all(ids.values()), f"empty split in {name}: { {p: len(v) for p, v in ids.items()} }"
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(ids[a]) & set(ids[b]), f"{name}: {a} and {b} overlap"
    for part, images in parts(second).items():
        np.testing.assert_array_equal(images.labels, parts(first)[part].labels)
        assert keys(images) == ids[part], f"{name}: {part} split differs between two identical loads"


@pytest.mark.parametrize("name", TARGETS)
def test_images_and_classes(name: str, loaded) -> None:
    _, splits, _ = loaded(name)
    assert splits.num_classes == len(splits.classes) >= 2
    assert len(set(splits.classes)) == len(splits.classes), "class names must be unique"
    assert set(np.unique(splits.train.labels)) == set(range(splits.num_classes)), "every class needs training data"
    channels = set()
    for images in parts(splits).values():
        assert images.labels.dtype == np.int64
        assert images.labels.min() >= 0 and images.labels.max() < splits.num_classes
        for i in sorted({0, len(images) // 2, len(images) - 1}):
            x, y = images[i]
            assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 3, (x.dtype, x.shape)
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
            assert y == images.labels[i]
            channels.add(x.shape[0])
    assert len(channels) == 1 and channels <= {1, 3}, f"{name}: channels {channels}"


@pytest.mark.parametrize("name", TARGETS)
def test_label_subset_contract(name: str, loaded) -> None:
    _, splits, _ = loaded(name)
    labels = splits.train.labels
    k = min(3, int(np.bincount(labels).min()) - 1)  # leave room so that different seeds can differ
    subset = label_subset(labels, k, seed=0, target_id=name)
    assert np.all(np.bincount(labels[subset], minlength=splits.num_classes) == k)
    np.random.seed(123)
    torch.manual_seed(123)  # global RNG state must not matter
    np.testing.assert_array_equal(label_subset(labels, k, seed=0, target_id=name), subset)
    assert not np.array_equal(label_subset(labels, k, seed=1, target_id=name), subset)


@pytest.mark.parametrize("name", TARGETS)
def test_problems_empty_when_configured(name: str, loaded) -> None:
    target, _, _ = loaded(name)
    with offline_torchvision():
        assert target.problems() == []


# ---------------------------------------------------------------------------------------------- digits


def test_digits_fixed_split_sizes() -> None:
    splits = Digits().load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1297, 200, 300)
    assert splits.classes == [str(d) for d in range(10)]
    assert tuple(splits.train.images.shape[1:]) == (1, 8, 8)
    assert np.all(np.abs(np.bincount(splits.val.labels) - 20) <= 1)  # stratified
    assert float(splits.train.images.mean()) < 0.5, "ink is bright on a dark background"


@pytest.mark.parametrize("shift", [s for s in SHIFTS if s != "none"])
def test_digits_shift_changes_images_not_labels(shift: str) -> None:
    plain, shifted = Digits().load(), Digits(shift=shift).load()
    for a, b in zip(parts(plain).values(), parts(shifted).values(), strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.images.shape == b.images.shape
        assert float((a.images - b.images).abs().mean()) > 0.02, f"shift {shift} barely changes the images"
        assert float(b.images.min()) >= 0.0 and float(b.images.max()) <= 1.0


def test_digits_rotation_direction_is_consistent() -> None:
    exact = Digits(shift="rotate", severity=90.0).load().train.images
    interpolated = Digits(shift="rotate", severity=90.001).load().train.images
    assert float((exact - interpolated).abs().max()) < 0.01


def test_digits_rejects_bad_shift() -> None:
    with pytest.raises(ValueError, match="blurry") as info:
        Digits(shift="blurry")
    assert all(choice in str(info.value) for choice in SHIFTS)
    with pytest.raises(ValueError, match="invert"):
        Digits(shift="invert", severity=0.5)


# ---------------------------------------------------------------------------------------------- synthetic


def test_synth_digits_balance_and_generation_time() -> None:
    thickness_variants.cache_clear()  # time the glyph rendering too
    start = time.perf_counter()
    splits = SynthDigits(n_per_class=300).load()
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"3,000 synthetic digits took {elapsed:.1f} s (budget about 3 s on 2 cores)"
    counts = sum(np.bincount(images.labels, minlength=10) for images in parts(splits).values())
    assert np.all(counts == 300)
    assert np.all(np.bincount(splits.train.labels) == 240)
    assert tuple(splits.train.images.shape[1:]) == (1, 8, 8)
    assert splits.classes == list("0123456789")


def test_synth_seed_changes_images_and_letters_are_classes() -> None:
    a, b = SynthDigits(n_per_class=5, seed=0).render(), SynthDigits(n_per_class=5, seed=1).render()
    assert not torch.equal(a, b)
    letters = SynthDigits(charset="ACEFHKLPRT", n_per_class=5, resolution=16).load()
    assert letters.classes == list("ACEFHKLPRT")
    assert tuple(letters.train.images.shape[1:]) == (1, 16, 16)


@pytest.mark.parametrize("charset", ["11", "7", "\u4e00\u4e8c"])
def test_synth_rejects_unusable_charset(charset: str) -> None:
    with pytest.raises(ValueError, match=r"charset|font"):
        SynthDigits(charset=charset, n_per_class=3).load()


def test_shapes_classes_and_resolution() -> None:
    splits = Shapes(resolution=16, n_per_class=10).load()
    assert splits.classes == list(CLASSES)
    assert tuple(splits.train.images.shape[1:]) == (1, 16, 16)
    assert sum(len(p) for p in parts(splits).values()) == 100


# ---------------------------------------------------------------------------------------------- image folder


def test_image_folder_split_folders(tmp_path: Path) -> None:
    write_tree(tmp_path / "train", {"b": 6, "a": 5})
    write_tree(tmp_path / "val", {"a": 2, "b": 2}, seed=1)
    write_tree(tmp_path / "test", {"a": 3, "b": 3}, seed=2)
    splits = ImageFolder(tmp_path).load()
    assert splits.classes == ["a", "b"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (11, 4, 6)
    assert all(p.parts[-3] == "test" for p in splits.test.paths)

    (tmp_path / "val").rename(tmp_path / "unused")  # without val/, validation is carved from train/
    carved = ImageFolder(tmp_path, val_fraction=0.4, split_seed=3).load()
    assert (len(carved.train), len(carved.val), len(carved.test)) == (7, 4, 6)
    assert not set(carved.train.paths) & set(carved.val.paths)
    assert {p.parts[-3] for p in [*carved.train.paths, *carved.val.paths]} == {"train"}
    assert np.all(np.bincount(carved.val.labels) == 2)


def test_image_folder_single_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {"x": 10, "y": 10})
    (tmp_path / "x" / "UPPER.PNG").write_bytes((tmp_path / "x" / "000.png").read_bytes())  # suffix case ignored
    (tmp_path / "x" / "notes.txt").write_text("not an image")
    (tmp_path / "x" / "._000.png").write_bytes(b"macOS resource fork")  # hidden: ignored, not a bad file
    (tmp_path / ".cache").mkdir()  # hidden folder: not a class
    splits = ImageFolder(tmp_path, val_fraction=0.2, test_fraction=0.3, mode="L").load()
    assert splits.classes == ["x", "y"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (11, 4, 6)
    assert splits.train[0][0].shape == (1, 8, 8)


def test_image_folder_reports_empty_and_mismatched_classes(tmp_path: Path) -> None:
    write_tree(tmp_path / "one", {"full": 3, "hollow": 0})
    problems = ImageFolder(tmp_path / "one").problems()
    assert len(problems) == 1 and "hollow" in problems[0] and "full" not in problems[0]
    with pytest.raises(ValueError, match="hollow"):
        ImageFolder(tmp_path / "one").load()

    write_tree(tmp_path / "two" / "train", {"a": 3, "b": 3, "c": 3})
    write_tree(tmp_path / "two" / "test", {"a": 2, "b": 2})
    problems = ImageFolder(tmp_path / "two").problems()
    assert len(problems) == 1 and "test/ lacks c" in problems[0]

    write_tree(tmp_path / "three" / "train", {"a": 3})
    assert "test/" in ImageFolder(tmp_path / "three").problems()[0]

    (tmp_path / "four").mkdir()
    assert "no class folders" in ImageFolder(tmp_path / "four").problems()[0]


def test_image_folder_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = ImageFolder("nowhere/data")  # relative: reported as the absolute path
    assert target.problems() == [f"image folder root {tmp_path / 'nowhere' / 'data'} does not exist"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        target.load()


def test_image_folder_bad_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path, {"a": 6, "b": 6})
    bad = tmp_path / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG garbage, not an image")

    with caplog.at_level(logging.WARNING, logger="benchmark.targets.image_folder"):
        splits = ImageFolder(tmp_path, bad_files="skip").load()
    assert sum(len(p) for p in parts(splits).values()) == 12
    assert all(bad not in p.paths for p in parts(splits).values())
    assert "1 unreadable" in caplog.text and str(bad) in caplog.text

    with pytest.raises(ValueError, match=r"broken\.png"):
        ImageFolder(tmp_path, bad_files="error").load()
    assert ImageFolder(tmp_path).problems() == []  # the fast preflight does not open files...
    deep = ImageFolder(tmp_path).problems(deep=True)  # ...the deep one decodes them
    assert len(deep) == 1 and str(bad) in deep[0]
    assert list(ImageFolder(tmp_path).bad_files_report()) == [bad]


def test_image_folder_rejects_bad_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'CMYK'.*RGB, L"):
        ImageFolder(tmp_path, mode="CMYK")
    with pytest.raises(ValueError, match=r"'ignore'.*skip, error"):
        ImageFolder(tmp_path, bad_files="ignore")


# ---------------------------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10"])
def test_torchvision_missing_files_are_a_clear_error(name: str, tmp_path: Path) -> None:
    root = tmp_path / "absent"
    target = TorchvisionDataset(name, root=root)
    problems = target.problems()
    assert len(problems) == 1 and str(root) in problems[0] and "target.download=true" in problems[0]
    with pytest.raises(FileNotFoundError, match="download=true"):
        target.load()
    assert not root.exists(), "nothing may be downloaded or created when download is false"


def test_torchvision_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match=r"'MINST'.*'MNIST'"):
        TorchvisionDataset("MINST")
    with pytest.raises(ValueError, match="'CIFAR10'"):
        TorchvisionDataset("cifar10")


def test_torchvision_uses_official_test_split(tmp_path: Path) -> None:
    import torchvision.datasets as tvd

    write_torchvision_files(tvd.MNIST, tmp_path, n_train_per_class=10, n_test_per_class=4)
    splits = TorchvisionDataset("MNIST", root=tmp_path, val_fraction=0.2).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 40)
    assert tuple(splits.train.images.shape[1:]) == (1, 28, 28)
    assert len(splits.classes) == 10
