"""Any dataset stored as ``root/<class>/<image>``, or as ``root/{train,val,test}/<class>/<image>``.

This is the target most users add: a new dataset on disk is one YAML that copies ``conf/target/image_folder.yaml``
and sets its ``root``. Images are decoded lazily (``FileImageSet``), so large trees cost nothing until training.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmark.data import FileImageSet, Splits, stratified_split
from benchmark.targets.base import Target

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""Recognised file suffixes, compared case-insensitively. Other files (README, .csv, thumbnails.db) are ignored."""

MODES = ("RGB", "L")
BAD_FILE_POLICIES = ("skip", "error")
SPLIT_FOLDERS = ("train", "val", "test")
SHOWN = 5
"""How many offending paths a message lists before summarising the rest as a count."""


class ImageFolder(Target):
    """Images in class folders; class names are the sorted folder names (label = index in that order).

    Layouts:

    * **split folders**: ``root/train`` and ``root/test`` (and optionally ``root/val``) each hold the same class
      folders. Those splits are used as given; without ``root/val``, a stratified ``val_fraction`` of ``train``
      (seeded by ``split_seed``) becomes the validation split.
    * **single tree**: ``root/<class>/...`` is split with ``stratified_split`` into (``val_fraction``,
      ``test_fraction``) shares seeded by ``split_seed``.

    Images may sit in sub-folders of a class folder. Hidden files and folders (names starting with ``.``) are
    ignored: they are usually OS metadata such as macOS ``._photo.jpg`` resource forks, which carry an image suffix
    but are not images.

    Unreadable files: ``load`` opens every file's header with Pillow (``Image.verify``, no full decode). With
    ``bad_files="skip"`` they are dropped with a warning, with ``"error"`` ``load`` raises naming them.
    ``problems(deep=True)`` fully decodes every image instead, for a thorough preflight.
    """

    def __init__(
        self,
        root: str | Path,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        mode: str = "RGB",
        bad_files: str = "skip",
    ):
        if mode not in MODES:
            raise ValueError(f"unknown image mode {mode!r}; choose one of {', '.join(MODES)}")
        if bad_files not in BAD_FILE_POLICIES:
            raise ValueError(f"unknown bad_files policy {bad_files!r}; choose one of {', '.join(BAD_FILE_POLICIES)}")
        if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction} and "
                f"{test_fraction}"
            )
        self.root = Path(root).expanduser().absolute()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.mode = mode
        self.bad_files = bad_files

    # ---------------------------------------------------------------- preflight

    def problems(self, deep: bool = False) -> list[str]:
        """Missing root, stray split folders, no or empty class folders, classes that differ between splits.

        Fast: lists directories only. ``deep=True`` also decodes every image and reports the unreadable ones.
        """
        if not self.root.exists():
            return [f"image folder root {self.root} does not exist"]
        if not self.root.is_dir():
            return [f"image folder root {self.root} is not a directory"]
        found = [s for s in SPLIT_FOLDERS if (self.root / s).is_dir()]
        if found and not {"train", "test"} <= set(found):
            return [
                f"{self.root} has {'/'.join(found)}/ but not both train/ and test/: give train/ and test/ "
                f"(val/ optional) for fixed splits, or only class folders for a single tree to split"
            ]
        out: list[str] = []
        trees = self._scan()
        for split, classes in trees.items():
            where = self.root / split if split else self.root
            if not classes:
                out.append(f"no class folders under {where}: expected {where}/<class>/<image>")
                continue
            empty = [name for name, files in classes.items() if not files]
            if empty:
                out.append(
                    f"class folders without images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {where}: "
                    + ", ".join(empty)
                )
        names = {split: set(classes) for split, classes in trees.items() if classes}
        if len(names) > 1:
            every = set().union(*names.values())
            gaps = [
                f"{split}/ lacks {', '.join(sorted(every - have))}" for split, have in names.items() if every - have
            ]
            if gaps:
                out.append(f"class folders differ across the split folders of {self.root}: " + "; ".join(gaps))
        if deep and not out:
            bad = self.bad_files_report(decode=True)
            if bad:
                out.append(f"{len(bad)} unreadable image files under {self.root}: {_listing(bad)}")
        return out

    def bad_files_report(self, decode: bool = False) -> dict[Path, str]:
        """Unreadable image files mapped to Pillow's reason. ``decode=False`` checks headers only (fast)."""
        paths = [p for classes in self._scan().values() for files in classes.values() for p in files]
        return _check_files(paths, decode)

    # ---------------------------------------------------------------- loading

    def load(self) -> Splits:
        issues = self.problems()
        if issues:
            error = FileNotFoundError if not self.root.is_dir() else ValueError
            raise error(f"image_folder target {self.root}: " + "; ".join(issues))
        trees = self._scan()
        classes = sorted(next(iter(trees.values())))
        index = {name: i for i, name in enumerate(classes)}
        bad = self._bad_files(trees)
        parts: dict[str, tuple[list[Path], np.ndarray]] = {}
        for split, tree in trees.items():
            kept = [(p, index[name]) for name in classes for p in tree[name] if p not in bad]
            paths = [p for p, _ in kept]
            labels = np.asarray([label for _, label in kept], dtype=np.int64)
            if len(np.unique(labels)) != len(classes):
                lost = sorted(set(classes) - {classes[i] for i in np.unique(labels)})
                raise ValueError(f"no readable images left in class folders {', '.join(lost)} of {self.root / split}")
            parts[split] = (paths, labels)

        if "" in parts:  # single tree
            paths, labels = parts[""]
            full = FileImageSet(paths, labels, self.mode)
            train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.split_seed)
            return Splits(full.subset(train), full.subset(val), full.subset(test), classes)
        sets = {split: FileImageSet(*parts[split], self.mode) for split in parts}
        if "val" in sets:
            return Splits(sets["train"], sets["val"], sets["test"], classes)
        train, val, _ = stratified_split(sets["train"].labels, (self.val_fraction, 0.0), self.split_seed)
        return Splits(sets["train"].subset(train), sets["train"].subset(val), sets["test"], classes)

    def _bad_files(self, trees: dict[str, dict[str, list[Path]]]) -> set[Path]:
        bad = _check_files([p for tree in trees.values() for files in tree.values() for p in files], decode=False)
        if not bad:
            return set()
        if self.bad_files == "error":
            raise ValueError(
                f"{len(bad)} unreadable image files under {self.root} (set bad_files=skip to drop them): "
                + _listing(bad, shown=20)
            )
        log.warning("skipping %d unreadable image files under %s: %s", len(bad), self.root, _listing(bad))
        return set(bad)

    def _scan(self) -> dict[str, dict[str, list[Path]]]:
        """``{split: {class: sorted image paths}}``; split ``""`` is the single-tree layout."""
        if (self.root / "train").is_dir() and (self.root / "test").is_dir():
            splits = [s for s in SPLIT_FOLDERS if (self.root / s).is_dir()]
            return {s: _scan_classes(self.root / s) for s in splits}
        return {"": _scan_classes(self.root)}


def _scan_classes(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    return {name: sorted(_images(folder / name)) for name in classes}


def _images(folder: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def _check_files(paths: list[Path], decode: bool) -> dict[Path, str]:
    """Reason per unreadable file. Threads overlap the file reads; Pillow releases the GIL while decoding."""
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        reasons = pool.map(lambda p: _check_file(p, decode), paths, chunksize=64)
        return {p: why for p, why in zip(paths, reasons, strict=True) if why is not None}


def _check_file(path: Path, decode: bool) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            else:
                img.verify()
    # UnidentifiedImageError is an OSError; truncated or malformed data surfaces as the others.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def _listing(bad: dict[Path, str], shown: int = SHOWN) -> str:
    items = [f"{p} ({why})" for p, why in list(bad.items())[:shown]]
    more = f" ... and {len(bad) - shown} more" if len(bad) > shown else ""
    return ", ".join(items) + more
