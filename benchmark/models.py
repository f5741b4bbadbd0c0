"""Model construction (timm) and verified weight loading: the architecture facts every other module reads.

timm loads checkpoints non-strictly whenever the classifier changes and only *logs* what did not match, so a
"pretrained" run can silently be a scratch run (a prefixed checkpoint loads nothing). Every load here goes through
``load_verified``: only classifier keys may be missing or unexpected, every other tensor must match in name and
shape, and checkpoints are read with ``weights_only=True`` or from safetensors.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from benchmark.data import Preprocessing


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
