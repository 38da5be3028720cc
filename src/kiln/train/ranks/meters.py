"""Metrics that are true averages over the whole job, not over one rank's shard.

Meters keep *sums* and a count (see ``kiln.tasks.meters``); ``kiln.distributed.reductions`` sums
those over ranks before dividing, which gives the exact global mean. Here a task's meters are
wrapped so the trainer's metrics are the job's, and evaluation loaders read this rank's shard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from kiln.checkpoint.manager import to_cpu
from kiln.data.loader import make_loader
from kiln.distributed.group import world
from kiln.distributed.reductions import reduce_state
from kiln.distributed.sampler import ShardSampler
from kiln.tasks.base import Meter, Task


class ReducingMeter:
    """Wraps a task's meter: ``update`` stays local (no sync per step); ``compute`` and
    ``state_dict`` sum over ranks. Every rank must call those two at the same moment.

    ``count`` is this rank's sample count until ``compute`` ran, the job's afterwards (so the
    epoch's samples_per_sec is the job's throughput).
    """

    def __init__(self, inner: Meter, factory: Callable[[], Meter]) -> None:
        self.inner = inner
        self.factory = factory
        self._global_count: int | None = None

    def update(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        self.inner.update(outputs, targets, loss)

    @property
    def count(self) -> int:
        if self._global_count is not None:
            return self._global_count
        return int(getattr(self.inner, "count", 0))

    def compute(self) -> dict[str, float]:
        total = reduce_state(to_cpu(self.inner.state_dict()))
        merged = self.factory()
        merged.load_state_dict(total)
        self._global_count = int(total.get("count", 0))
        return merged.compute()

    def state_dict(self) -> dict[str, Any]:
        """The job's sums: a checkpoint holds them once, on rank 0's side (see load_state_dict)."""
        return reduce_state(to_cpu(self.inner.state_dict()))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rank 0 takes the saved job-wide sums, the others start from zero: the next reduction
        adds up to the same totals with any number of processes."""
        if world().is_zero:
            self.inner.load_state_dict(state)


class ReducingTask:
    """A task whose meters reduce over ranks; everything else is the wrapped task's."""

    def __init__(self, inner: Task) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        return self.inner.split_batch(batch)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.inner.loss(outputs, targets)

    def meter(self) -> Meter:
        return ReducingMeter(self.inner.meter(), self.inner.meter)

    def to(self, device: torch.device) -> Task:
        self.inner.to(device)
        return self

    def predict(self, outputs: Tensor) -> Tensor:
        return self.inner.predict(outputs)


def shard_loader(loader: DataLoader[Any] | None) -> DataLoader[Any] | None:
    """The same evaluation loader, reading only this rank's shard (unchanged for one process)."""
    w = world()
    if loader is None or not w.distributed:
        return loader
    sampler = ShardSampler(len(loader.dataset), w.rank, w.size)  # type: ignore[arg-type]
    return make_loader(
        loader.dataset, loader.batch_size or 1, loader.num_workers, sampler,
        persistent_workers=loader.persistent_workers, prefetch_factor=loader.prefetch_factor,
        pin_memory=loader.pin_memory,
    )
