"""Wrapping the model in DistributedDataParallel: gradients are averaged over ranks in backward.

The trainer keeps the plain module for everything else (checkpoints, the model package, early
stopping's best weights), so nothing saved ever carries DDP's ``module.`` prefix. Gradient
accumulation all-reduces on every micro-batch (no ``no_sync``): the same result, a little more
communication, and no change to the loop.
"""

from __future__ import annotations

import torch
from torch import nn

from kiln.distributed.group import world


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module | None:
    """``DDP(model)`` when several processes train, else None (train the model itself).

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start equal.
    """
    if not world().distributed:
        return None
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index])
    return DistributedDataParallel(model)
