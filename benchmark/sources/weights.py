"""Weights kinds: where a source's weights come from, as config objects (``_target_`` in ``source.weights``).

Each kind owns everything that differs between kinds, so no other module asks which kind it holds:

* ``key_identity``: what enters the run key (file weights by content, never by path);
* ``problems``: what preflight reports before anything trains (a missing file, weights not in the offline cache);
* ``local_file``: the file the weights are read from (the harness-pretrained checkpoint is trained here if missing);
* ``content_id``: the weights' identity in cache keys of features and scores;
* ``state_dict`` / ``load``: the tensors, loaded through ``benchmark.models.load_verified``;
* ``labelled_data``: the source's labelled dataset, for kinds that have one (domain adaptation, similarity scores).

A new kind is one class (a subclass of ``SourceWeights`` in its own module) and a source YAML naming it.
Composition (``benchmark.compose``) instantiates the kind with ``_recursive_=False`` and two keyword arguments of its
own: ``source_id`` (for messages) and ``dataset_id`` (the name of a labelled dataset, where the kind has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark import identity
from benchmark.models import load_verified, read_state_dict


@dataclass(frozen=True)
class LabelledData:
    """A source's labelled dataset: its name, the target object that loads it and its unresolved config."""

    dataset_id: str
    dataset: Any  # benchmark.targets.base.Target
    config: dict[str, Any]


class SourceWeights:
    """Base class of the weights kinds. ``kind`` names the kind in tags, tables and run keys."""

    kind: ClassVar[str] = ""

    def __init__(self, source_id: str = "", dataset_id: str | None = None):
        self.source_id = source_id
        self.dataset_id = dataset_id

    @classmethod
    def key_identity(cls, raw: dict[str, Any], digest: bool = True) -> dict[str, Any]:
        """The weights' part of a run key, from the unresolved YAML without ``_target_``. ``digest=False``: the
        config may name no real file yet (the defaults a variant is measured against)."""
        return {"kind": cls.kind, **raw}

    @classmethod
    def variant_name(cls, raw: dict[str, Any]) -> str:
        """How a cell's ``variant`` names these weights when they enter the key by content (file name)."""
        return cls.kind

    @classmethod
    def model_tag(cls, raw: dict[str, Any], arch: str | None) -> str | None:
        """The timm name (``arch`` or ``arch.tag``) whose pretrained config describes the inputs these weights were
        trained on, from the resolved YAML; None when the harness chooses the inputs (random or harness-pretrained
        weights). Hub and file sources take their preprocessing from it (``benchmark.data_config``)."""
        return None

    def problems(self, uses_weights: bool) -> list[str]:
        """Preflight: what would fail a run whose strategy does (``uses_weights``) or does not read the weights."""
        return []

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path | None:
        """The file the weights are read from (``source`` a ``SourceSpec``, ``ctx`` the job's ``Context``)."""
        return None

    def content_id(self, file: Path | None) -> str:
        """The identity of the weights in cache keys (features, scores): the file's sha256 by default."""
        return identity.file_digest(Path(file))

    def state_dict(self, file: Path | None) -> dict[str, torch.Tensor]:
        """Every tensor of the checkpoint, classifier included (scores read the source's own predictions)."""
        return read_state_dict(Path(file))

    def origin(self, file: Path | None) -> str:
        """How load errors name the weights."""
        return f"{self.kind} weights {str(file)!r}"

    def load(self, model: nn.Module, file: Path | None) -> int:
        """Load the weights into a freshly built model (verified: only classifier keys may differ); tensors loaded."""
        return load_verified(model, self.state_dict(file), self.origin(file))

    @property
    def reported_top1(self) -> float | None:
        """The ImageNet-1k top-1 (%) reported for these weights, where the kind knows it (source ranking's baseline)."""
        return None

    @property
    def labelled_data(self) -> LabelledData | None:
        """The labelled dataset these weights were trained on, when the harness has it (pretrain weights)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source_id={self.source_id!r})"


class NoWeights(SourceWeights):
    """Random initialisation: the source can only serve as an architecture (``scratch`` and the other baselines)."""

    kind = "none"

    def problems(self, uses_weights: bool) -> list[str]:
        if not uses_weights:
            return []
        return [
            f"source {self.source_id!r} has no weights (weights: none) but the strategy transfers pretrained weights; "
            "use strategy=scratch or a source with hub, file or pretrain weights"
        ]

    def local_file(self, source: Any, ctx: Any, trainer: Any) -> Path | None:
        raise ValueError(self.problems(True)[0])

    def content_id(self, file: Path | None) -> str:
        return self.kind

    def load(self, model: nn.Module, file: Path | None) -> int:
        return 0
