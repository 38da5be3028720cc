"""The one way kiln builds a DataLoader, for training, evaluation and every rank's shard alike."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def make_loader(
    dataset: Dataset[Any], batch_size: int, workers: int, sampler: Sampler[int] | None = None
) -> DataLoader[Any]:
    """A DataLoader with its own generator, so creating an iterator never draws from torch's
    global RNG (which dropout uses): a resumed run then sees the very same random numbers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
