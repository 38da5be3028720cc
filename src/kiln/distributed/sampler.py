"""Evaluation shards: each rank reads its own samples, and together the ranks read each one once."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Rank r evaluates samples r, r+W, r+2W...: no padding and no duplicates, so sums reduced over
    ranks cover every sample exactly once."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
