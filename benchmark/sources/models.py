"""Model construction and verified weight loading.

timm loads checkpoints non-strictly whenever the classifier changes and only *logs* what did not match, so a
"pretrained" run can silently be a scratch run (a prefixed checkpoint loads nothing). Every load here goes through
``load_verified``: only classifier keys may be missing or unexpected, every other tensor must match in name and
shape, and checkpoints are read with ``weights_only=True`` or from safetensors.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from benchmark.data import Preprocessing
from benchmark.targets.base import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoWeights:
    """Random initialisation: the source can only serve as an architecture for ``scratch``."""

    kind: str = "none"


@dataclass(frozen=True)
class HubWeights:
    """A timm pretrained tag (``resnet50.a1_in1k``), read from the Hugging Face cache or downloaded when online."""

    tag: str
    kind: str = "hub"


@dataclass(frozen=True)
class FileWeights:
    """A local ``.safetensors`` or ``.pth``/``.pt`` state dict, loaded strictly except for the classifier."""

    path: Path
    kind: str = "file"


@dataclass(frozen=True)
class PretrainRecipe:
    """How the harness pretrains a source on its dataset. Part of the checkpoint's content address."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 3.0e-3
    weight_decay: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class PretrainWeights:
    """Weights the harness trains itself on a source dataset, cached content-addressed and logged to MLflow."""

    dataset_id: str
    dataset: Target
    dataset_config: dict[str, Any]
    recipe: PretrainRecipe = field(default_factory=PretrainRecipe)
    kind: str = "pretrain"


SourceWeights = NoWeights | HubWeights | FileWeights | PretrainWeights


@dataclass(frozen=True)
class SourceSpec:
    """Everything that defines a source: its id, architecture, preprocessing and weights."""

    id: str
    arch: str
    preprocessing: Preprocessing
    weights: SourceWeights
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def check_arch(arch: str) -> str | None:
    """None when timm knows ``arch`` (a bare name or ``name.tag``), else an error naming close matches."""
    name = arch.split(".", 1)[0]
    if timm.is_model(name):
        return None
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the valid names"
    return f"unknown timm architecture {arch!r}; {hint}"


def build_model(arch: str, num_classes: int, preprocessing: Preprocessing, **kwargs: Any) -> nn.Module:
    """A randomly initialised timm model with a ``num_classes`` head for ``preprocessing``'s inputs.

    Transformers with fixed position embeddings are built for ``preprocessing.image_size``; architectures whose
    constructor takes no ``img_size`` (CNNs) are built without it.
    """
    problem = check_arch(arch)
    if problem:
        raise ValueError(problem)
    common = dict(pretrained=False, num_classes=num_classes, in_chans=preprocessing.in_chans, **kwargs)
    try:
        return timm.create_model(arch, img_size=preprocessing.image_size, **common)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
        return timm.create_model(arch, **common)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the model's classifier (``fc``, ``head``, ``head.fc``...), from timm's own config."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or "fc"
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(path)!r} holds no state dict of tensors")
    return obj


def load_verified(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> int:
    """Load ``state`` into ``model``; return the number of tensors loaded.

    timm's own ``checkpoint_filter_fn`` of the model's module runs first, as in ``pretrained=True`` (it remaps
    old key names and resamples position embeddings to the model's input size).

    Only classifier keys may be missing (the head is new for the target) or unexpected (the source's old head);
    classifier tensors whose shape differs are dropped. Anything else raises, naming a few offending keys.
    """
    module = sys.modules.get(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    heads = classifier_prefixes(model)
    own = model.state_dict()
    is_head = lambda k: k.startswith(heads)  # noqa: E731
    missing = [k for k in own if k not in state and not is_head(k)]
    unexpected = [k for k in state if k not in own and not is_head(k)]
    mismatched = [k for k in state if k in own and not is_head(k) and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} with another shape (e.g. {mismatched[:3]})")
        raise ValueError(
            f"weights from {origin} do not fit {type(model).__name__}: {'; '.join(parts)}. Only classifier keys "
            f"({', '.join(heads)}) may differ; a prefixed checkpoint or another architecture loads nothing useful."
        )
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return len(usable)


def hub_checkpoint(tag: str) -> Path:
    """The local file of a timm hub tag; with ``HF_HUB_OFFLINE=1`` only the cache is read (clear error if absent)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cfg = timm.get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        known = timm.list_pretrained(tag.split(".", 1)[0] + "*")
        raise ValueError(f"no Hugging Face weights for timm tag {tag!r}; pretrained tags of this model: {known}")
    errors = []
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return Path(hf_hub_download(cfg.hf_hub_id, filename))
        except LocalEntryNotFoundError as exc:
            errors.append(str(exc).splitlines()[0])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise FileNotFoundError(
        f"hub weights {tag!r} ({cfg.hf_hub_id}) are not in the local Hugging Face cache and cannot be downloaded "
        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {errors[0]}"
    )


def load_source_weights(model: nn.Module, weights: SourceWeights, checkpoint: Path | None = None) -> int:
    """Apply ``weights`` to a freshly built model; ``checkpoint`` is the file for pretrain weights."""
    if isinstance(weights, NoWeights):
        return 0
    if isinstance(weights, HubWeights):
        path = hub_checkpoint(weights.tag)
        return load_verified(model, read_state_dict(path), f"hub tag {weights.tag!r}")
    if isinstance(weights, FileWeights):
        return load_verified(model, read_state_dict(weights.path), f"file {str(weights.path)!r}")
    if checkpoint is None:
        raise ValueError("pretrain weights need the cached checkpoint path")
    return load_verified(model, read_state_dict(checkpoint), f"pretrained checkpoint {str(checkpoint)!r}")
