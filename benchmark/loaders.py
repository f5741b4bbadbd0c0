"""DataLoaders over the harness's datasets: seeded epoch order (``EpochShuffle``), whole-batch fetches from in-memory
tensors. Used by the training loop and by self-supervised pretraining alike, so both draw batches the same way."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from benchmark.augment import AugmentedSet
from benchmark.data import EpochShuffle, LazyPreprocessed

FILE_WORKERS = 4
"""Most DataLoader workers for files on disk when ``trainer.num_workers`` is 0: decoding and resizing a JPEG costs
milliseconds, so a few processes keep a CPU or GPU step fed; more only add memory (each holds a prefetched batch)."""


def workers(dataset: Dataset, num_workers: int) -> int:
    """``num_workers``, or for a dataset decoded from files when it is 0 (the in-memory default), up to
    ``FILE_WORKERS`` processes, leaving one core to the training loop."""
    inner = dataset.data if isinstance(dataset, AugmentedSet) else dataset
    if num_workers or not isinstance(inner, LazyPreprocessed):
        return num_workers
    return min(FILE_WORKERS, max(1, (os.cpu_count() or 1) - 1))


class InMemoryBatches(TensorDataset):
    """A TensorDataset fetched a whole batch at a time (one indexing op per tensor instead of a Python call and a
    collate per example)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices)
        return tuple(t[idx] for t in self.tensors)


def _as_is(batch):
    return batch


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    salt: str = "",
    sampler: Sampler | None = None,
) -> DataLoader:
    """A loader drawing batches in the seeded order. In-memory tensors and augmented sets are fetched a whole batch
    at a time; an augmented set gets its epoch with every index (``benchmark.augment.EpochKeys``)."""
    augmented = isinstance(dataset, AugmentedSet)
    num_workers = workers(dataset, num_workers)
    batched = isinstance(dataset, TensorDataset) or augmented
    if sampler is None and shuffle:
        sampler = dataset.sampler(seed, salt) if augmented else EpochShuffle(len(dataset), seed, salt)
    return DataLoader(
        InMemoryBatches(*dataset.tensors) if isinstance(dataset, TensorDataset) else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=_as_is if batched else None,
    )
