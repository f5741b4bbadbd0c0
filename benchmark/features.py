"""Frozen features: the source backbone runs once per example, results cached on disk and in memory.

Used by strategies with a frozen backbone (``TransferStrategy.frozen_backbone``; augmentation is off in this
harness) to train their head on cached features, and by the transferability and similarity scores. The features of
a (source weights, target, preprocessing) triple do not depend on the seed or the label budget, so one extraction
serves every run of the pair: runs index the cached training features with their label subset.

A timm model's forward equals ``get_classifier()(forward_head(forward_features(x), pre_logits=True))`` in eval
mode, so a head trained on these features is exactly the linear probe of the full model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from benchmark import identity
from benchmark.util import atomic_path

log = logging.getLogger(__name__)


@dataclass
class SplitFeatures:
    """Pre-logit features and the source model's own logits for the train/val/test splits of a target."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    logits_train: torch.Tensor | None = None
    seconds: float = 0.0  # extraction time (0 when read from the cache)


@torch.no_grad()
def extract(model: nn.Module, dataset: Dataset, batch_size: int = 256, head: nn.Module | None = None):
    """``(features, logits)`` of ``dataset`` through ``model`` in eval mode (logits from ``head`` if given)."""
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        f = model.forward_head(model.forward_features(x), pre_logits=True)
        feats.append(f.float())
        if head is not None:
            logits.append(head(f).float())
    model.train(was_training)
    dim = feats[0].shape[1] if feats else 0
    return torch.cat(feats) if feats else torch.empty(0, dim), torch.cat(logits) if logits else None


def pixels(dataset: Dataset) -> np.ndarray:
    """The preprocessed images of ``dataset`` as flat rows: the no-network reference of the unsupervised scores."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0].flatten(1).numpy()
    return np.stack([np.asarray(x).reshape(-1) for x, _ in dataset])


def file_digest(path: Path) -> str:
    """Content hash of a weights file (so a changed file is a new feature cache entry): the run identity's sha256,
    cut to 16 hex digits, hashed once per file version."""
    return identity.file_digest(path)[:16]


_MEMO: dict[str, SplitFeatures] = {}


def cached_split_features(
    key: str, cache_dir: Path, model: nn.Module, train: Dataset, val: Dataset, test: Dataset, with_logits: bool = False
) -> SplitFeatures:
    """Features of the full splits under ``key`` (a content hash of source weights, target and preprocessing),
    from memory, else ``cache_dir/features/<key>.pt``, else extracted now and written there atomically.

    ``with_logits`` also asks for the training split's logits through ``model``'s own head (the source classifier,
    for the transferability scores); features cached without them cost one pass over the training split, not three.
    """
    cached = _MEMO.get(key)
    path = Path(cache_dir) / "features" / f"{key}.pt"
    if cached is None and path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        cached = SplitFeatures(data["train"], data["val"], data["test"], data.get("logits_train"))
    if cached is not None and (cached.logits_train is not None or not with_logits):
        _MEMO[key] = cached
        return cached
    t0 = time.perf_counter()
    head = model.get_classifier() if with_logits else None
    tr, lg = extract(model, train, head=head)
    if cached is not None:  # val and test features are cached; only the training logits were missing
        va, te = cached.val, cached.test
    else:
        va, _ = extract(model, val)
        te, _ = extract(model, test)
    seconds = time.perf_counter() - t0
    out = SplitFeatures(tr, va, te, lg, seconds)
    with atomic_path(path) as tmp:
        torch.save({"train": tr, "val": va, "test": te, "logits_train": lg}, tmp)
    log.info("extracted features %s (%d+%d+%d examples, dim %d) in %.2f s", key, len(tr), len(va), len(te),
             tr.shape[1], seconds)  # fmt: skip
    _MEMO[key] = out
    return out
