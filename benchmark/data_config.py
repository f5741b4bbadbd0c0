"""A source's preprocessing from the model's own data config: timm's pretrained config of the hub tag or the
architecture (input size, channels, mean, std, interpolation), with explicit values overriding it.

Why: a checkpoint was trained on inputs of one size and normalisation; feeding it 32-px images normalised with
0.5 (the bundled sources' ``small32``) silently wastes the weights. Hub and file sources therefore take every value
they do not set from timm (``timm.data.resolve_data_config`` of the tag's ``pretrained_cfg``, the same values as
``resolve_model_data_config`` of a model built from it), and preflight warns when a set value differs
(``differences``). The bundled sources name all their values and never ask timm, so nothing they compute changes.

timm's crop (``crop_pct``) is not applied: every image is resized whole to a square of ``image_size``.
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache
from typing import Any

import timm
import torch
from timm.data import resolve_data_config, resolve_model_data_config

from benchmark.data import Preprocessing

FIELDS = tuple(f.name for f in fields(Preprocessing))


@lru_cache(maxsize=64)
def model_data_config(name: str) -> Preprocessing:
    """The preprocessing timm's pretrained config gives ``name`` (``arch`` or ``arch.tag``; a bare architecture
    means its default tag). An architecture without a pretrained config is built on the ``meta`` device (no memory,
    no weights) and asked with ``resolve_model_data_config``."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is not None:
        data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    else:
        with torch.device("meta"):
            data = resolve_model_data_config(timm.create_model(name.split(".", 1)[0], pretrained=False))
    chans, height, _ = data["input_size"]
    return Preprocessing(image_size=height, in_chans=chans, mean=data["mean"], std=data["std"],
                         interpolation=data["interpolation"])  # fmt: skip


def resolve(given: dict[str, Any] | None, arch: str, model_tag: str | None, where: str) -> Preprocessing:
    """The source's preprocessing from its YAML values ``given``.

    A value set to null comes from the model's data config (of ``model_tag``, else of ``arch``). When the source's
    weights carry a model config (``model_tag`` not None: hub and file weights) a value left out comes from it too;
    otherwise (the bundled sources) a value left out takes ``Preprocessing``'s default.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {list(FIELDS)}")
    explicit = {k: v for k, v in given.items() if v is not None}
    if model_tag is None and len(explicit) == len(given):
        return Preprocessing(**explicit)
    model = model_data_config(model_tag or arch)
    filled = FIELDS if model_tag is not None else [k for k, v in given.items() if v is None]
    return Preprocessing(**{**{k: getattr(model, k) for k in filled}, **explicit})


def differences(prep: Preprocessing, model_tag: str | None) -> list[str]:
    """``key=value (the model's: value)`` for each value of ``prep`` that differs from the model's data config;
    empty for weights without one (random or harness-pretrained)."""
    if model_tag is None:
        return []
    model = model_data_config(model_tag)
    return [
        f"{k}={_show(getattr(prep, k))} (the model's: {_show(getattr(model, k))})"
        for k in FIELDS
        if getattr(prep, k) != getattr(model, k)
    ]


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return str(value)
