"""A target's splits, loaded once per process and configuration: a sweep's jobs decode or render their data once."""

from __future__ import annotations

import logging
import time
from typing import Any

from benchmark.data import Splits
from benchmark.util import stable_hash

log = logging.getLogger(__name__)

_SPLITS_CACHE: dict[str, Splits] = {}


def load_splits(target_id: str, target: Any, config: dict[str, Any]) -> Splits:
    """``target.load()`` (``target`` a ``benchmark.targets.base.Target``), memoised per id and unresolved config."""
    key = stable_hash({"id": target_id, "config": config})
    if key not in _SPLITS_CACHE:
        t0 = time.perf_counter()
        _SPLITS_CACHE[key] = target.load()
        log.info("loaded target %s in %.2f s", target_id, time.perf_counter() - t0)
    return _SPLITS_CACHE[key]


def clear() -> None:
    """Forget every loaded split (tests that rewrite a dataset's files between loads)."""
    _SPLITS_CACHE.clear()
