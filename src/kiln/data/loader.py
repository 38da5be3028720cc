"""The one way kiln builds a DataLoader, for training, evaluation and every rank's shard alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

if TYPE_CHECKING:
    from kiln.config.data_options import DataConfig


class LoaderKnobs(TypedDict):
    """The throughput settings of ``data:`` (``persistent_workers``, ``prefetch_factor``,
    ``pin_memory``) as ``make_loader`` takes them, ``pin_memory`` resolved to a bool."""

    persistent_workers: bool
    prefetch_factor: int | None
    pin_memory: bool


def loader_knobs(cfg: DataConfig, device: torch.device) -> LoaderKnobs:
    """``cfg``'s loader settings for a run on ``device``: ``pin_memory: auto`` pins batches when
    they go to a CUDA device (page-locked memory copies faster and asynchronously); elsewhere
    pinning only costs memory."""
    setting = cfg.pin_memory
    pin = device.type == "cuda" and torch.cuda.is_available() if setting == "auto" else setting
    return LoaderKnobs(
        persistent_workers=cfg.persistent_workers, prefetch_factor=cfg.prefetch_factor, pin_memory=pin
    )


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    workers: int,
    sampler: Sampler[Any] | None = None,
    *,
    persistent_workers: bool = True,
    prefetch_factor: int | None = None,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    """A DataLoader with its own generator, so creating an iterator never draws from torch's
    global RNG (which dropout uses): a resumed run then sees the very same random numbers.

    ``persistent_workers`` and ``prefetch_factor`` concern worker processes and apply only when
    ``workers > 0`` (with none, there is nothing to keep alive or to load ahead); a
    ``prefetch_factor`` of None is PyTorch's default (2 batches a worker).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
