"""File weights: a local ``.safetensors`` or ``.pth``/``.pt`` state dict, identified by its content (sha256).

A checkpoint from another codebase rarely uses timm's names. ``key_map`` renames its keys (ordered regex rules, e.g.
``{"^module\\.": ""}`` strips DataParallel's prefix); ``remap: by_order`` gives its tensors the model's names position
by position, allowed only when the counts agree and every shape but the classifier's agrees in order. Either way the
verified load follows (``benchmark.models.load_verified``): only classifier keys may differ. Both settings are part of
the run key (they change what is loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from benchmark import identity
from benchmark.models import classifier_prefixes, load_verified
from benchmark.sources.key_map import apply_key_map, remap_by_order
from benchmark.sources.weights import SourceWeights

REMAPS = ("by_order",)


class FileWeights(SourceWeights):
    """A user's checkpoint. A replaced file is a new run (new sha256), a moved one is not."""

    kind = "file"

    def __init__(self, path: str | Path, key_map: Any = None, remap: str | None = None, **kw: Any):
        super().__init__(**kw)
        self.path = Path(str(path)).expanduser()
        key_map = OmegaConf.to_container(key_map) if OmegaConf.is_config(key_map) else key_map
        self.key_map = dict(key_map) if isinstance(key_map, dict) else [tuple(r) for r in key_map or []]
        if remap is not None and remap not in REMAPS:
            raise ValueError(f"source {self.source_id!r}: weights.remap={remap!r}; choose null or one of {REMAPS}")
        self.remap = remap

    def state_dict(self, file: Path | None) -> dict[str, torch.Tensor]:
        state = super().state_dict(file)
        return apply_key_map(state, self.key_map) if self.key_map else state

    def load(self, model: nn.Module, file: Path | None) -> int:
        state = self.state_dict(file)
        if self.remap == "by_order":
            if Path(file).suffix == ".safetensors":
                raise ValueError(
                    f"source {self.source_id!r}: weights.remap=by_order needs the checkpoint's own tensor order, which "
                    f"a .safetensors file does not keep ({file}); use the original .pth/.pt file or weights.key_map"
                )
            state = by_order(state, model)
        return load_verified(model, state, self.origin(file))

    @classmethod
    def key_identity(cls, raw: dict[str, Any], digest: bool = True) -> dict[str, Any]:
        rest = {k: v for k, v in raw.items() if k != "path"}
        if not digest:
            return {"kind": cls.kind, **raw}
        return {"kind": cls.kind, **rest, "sha256": identity.file_digest(Path(str(raw["path"])).expanduser())}

    @classmethod
    def variant_name(cls, raw: dict[str, Any]) -> str:
        return Path(str(raw.get("path", "file"))).name

    @classmethod
    def model_tag(cls, raw: dict[str, Any], arch: str | None) -> str | None:
        return arch  # the architecture's default pretrained config: the best guess of what the file expects

    def problems(self, uses_weights: bool) -> list[str]:
        if self.path.is_file():
            return []
        return [f"source {self.source_id!r}: weights file {str(self.path.resolve())!r} does not exist"]

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path:
        return self.path

    def origin(self, file: Path | None) -> str:
        return f"file {str(self.path)!r}"


def by_order(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` under ``model``'s names, position by position (``key_map.remap_by_order``). The classifier is new for
    the target, so its shapes may differ: for those positions the checkpoint's own shapes stand in."""
    own = model.state_dict()
    heads = classifier_prefixes(model)
    theirs = list(state.values())
    template = {k: theirs[i] if k.startswith(heads) and i < len(theirs) else v for i, (k, v) in enumerate(own.items())}
    return remap_by_order(state, template)
