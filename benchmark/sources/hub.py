"""Hub weights: a timm pretrained tag (``resnet50.a1_in1k``), read from the Hugging Face cache, downloaded only when
online and ``HF_HUB_OFFLINE`` is unset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError

from benchmark.sources.weights import SourceWeights

FILES = ("model.safetensors", "pytorch_model.bin")


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_cached(tag: str) -> bool:
    """Whether the tag's weights are in the local Hugging Face cache."""
    cfg = timm.get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        return False
    return any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in FILES)


def hub_checkpoint(tag: str) -> Path:
    """The local file of a timm hub tag; with ``HF_HUB_OFFLINE=1`` only the cache is read (clear error if absent)."""
    cfg = timm.get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        known = timm.list_pretrained(tag.split(".", 1)[0] + "*")
        raise ValueError(f"no Hugging Face weights for timm tag {tag!r}; pretrained tags of this model: {known}")
    errors = []
    for filename in FILES:
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


class HubWeights(SourceWeights):
    """A timm pretrained tag; the tag (not the file) identifies the weights in run and cache keys."""

    kind = "hub"

    def __init__(self, tag: str, **kw: Any):
        super().__init__(**kw)
        self.tag = str(tag)

    @classmethod
    def model_tag(cls, raw: dict[str, Any], arch: str | None) -> str | None:
        return str(raw["tag"])

    def problems(self, uses_weights: bool) -> list[str]:
        if not (uses_weights and hf_offline()) or hub_cached(self.tag):
            return []
        return [
            f"source {self.source_id!r}: hub weights {self.tag!r} are not in the local Hugging Face cache and "
            "HF_HUB_OFFLINE=1 forbids downloading them; run once online (unset HF_HUB_OFFLINE) or use "
            "a source with file weights (source=local_file) and a local checkpoint"
        ]

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path:
        return hub_checkpoint(self.tag)

    def content_id(self, file: Path | None) -> str:
        return self.tag

    def origin(self, file: Path | None) -> str:
        return f"hub tag {self.tag!r}"
