"""DataLoaders over the harness's datasets: seeded epoch order (``EpochShuffle``), whole-batch fetches from in-memory
tensors. Used by the training loop and by self-supervised pretraining alike, so both draw batches the same way."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from benchmark.data import EpochShuffle


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
    batched = isinstance(dataset, TensorDataset)
    if sampler is None and shuffle:
        sampler = EpochShuffle(len(dataset), seed, salt)
    return DataLoader(
        InMemoryBatches(*dataset.tensors) if batched else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=_as_is if batched else None,
    )
