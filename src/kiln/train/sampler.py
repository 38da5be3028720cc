"""A resumable, shardable sampler: the order of an epoch is a pure function of (seed, epoch).

So the permutation never needs saving: the position within the epoch is enough to continue
exactly where a run stopped. With ``world_size > 1`` each rank takes every world_size-th index
(the permutation is padded by wrapping so every rank sees the same number of samples).

``keyed=True`` yields ``(epoch, index)`` keys instead of bare indices, for datasets that draw
per-sample randomness (augmentation, ``kiln.data.images.augment``) and declare ``epoch_keys``:
the key tells such a dataset which epoch it is in, whichever worker process loads the sample, so
what a sample becomes depends on (seed, epoch, index) only, never on workers or on a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

import torch
from torch.utils.data import Sampler

Key: TypeAlias = int | tuple[int, int]  # an index, or (epoch, index) when keyed


class EpochSampler(Sampler[Key]):
    def __init__(
        self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
        keyed: bool = False,
    ) -> None:
        self.size = size
        self.keyed = keyed
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0  # samples of this rank's share already consumed in the current epoch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip its first ``start`` samples (for resume)."""
        self.epoch = epoch
        self.start = start

    def permutation(self) -> list[int]:
        """This rank's full order for the current epoch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.world_size == 1:
            return order
        total = -(-self.size // self.world_size) * self.world_size
        padded = order + order[: total - self.size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Key]:
        rest = self.permutation()[self.start :]
        if self.keyed:
            epoch = self.epoch
            return iter([(epoch, index) for index in rest])
        return iter(rest)

    def __len__(self) -> int:
        return -(-self.size // self.world_size) - self.start
