"""The interface every target (and every source-pretraining dataset) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from benchmark.data import Splits


class Target(ABC):
    """A labelled image dataset with a fixed train/val/test split.

    Subclasses take typed constructor arguments only (Hydra instantiates them from ``conf/target/<id>.yaml``).
    ``load`` may be slow (decoding, rendering); ``problems`` must be fast and must not train or download anything:
    it is the preflight check that names missing paths and bad settings before any job starts.
    """

    @abstractmethod
    def load(self) -> Splits:
        """Return the fixed split. Must be deterministic for a given configuration."""

    def problems(self) -> list[str]:
        """Human-readable problems that would make ``load`` fail (missing paths, empty classes...)."""
        return []
