"""Process-group primitives on PyTorch's own engine: torchrun launches (``launch``), its
environment read once (``env``), joining and leaving the group and the few collectives kiln needs
(``group``), the DDP wrap (``ddp``), evaluation shards (``sampler``), sums over ranks
(``reductions``) and a worker process's edges (``worker``).

This package imports nothing else of kiln (an import-linter contract in pyproject.toml holds it
to that), so it can be read, tested and reused on its own. What a *training run* does on several
ranks (the batch plan, rank 0 alone writing, every rank's RNG in a checkpoint, the agreed stop and
resume) is training glue and lives in ``kiln.train.ranks``, on top of these.

Errors: the primitives raise Python's and torch's own exceptions, plus ``GroupError`` (a
RuntimeError) when a process cannot join the group; never a ``kiln.errors`` class. The layers
above turn them into errors a user can act on (``kiln.train.ranks.group.join_group`` raises
DistributedError, ``kiln.cli.launch`` DistributedError and UsageError).

>>> from kiln.distributed import world
>>> world().size  # a plain process is a world of one
1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.distributed.env import LaunchEnv, launch_env
    from kiln.distributed.group import (
        GroupError,
        World,
        all_gather_object,
        all_reduce_max,
        broadcast_object,
        is_rank_zero,
        needs_joining,
        seed_rank,
        setup,
        shutdown,
        world,
    )

# Lazy (PEP 562): the CLI reads kiln.distributed.env for every command; the group module imports
# torch, which takes over a second. Written out here rather than through kiln._lazy, so that this
# package imports nothing else of kiln.
_GROUP = ("GroupError", "World", "all_gather_object", "all_reduce_max", "broadcast_object",
          "is_rank_zero", "needs_joining", "seed_rank", "setup", "shutdown", "world")
_PUBLIC = {
    **dict.fromkeys(_GROUP, "kiln.distributed.group"),
    "LaunchEnv": "kiln.distributed.env",
    "launch_env": "kiln.distributed.env",
}

__all__ = [
    "GroupError",
    "LaunchEnv",
    "World",
    "all_gather_object",
    "all_reduce_max",
    "broadcast_object",
    "is_rank_zero",
    "launch_env",
    "needs_joining",
    "seed_rank",
    "setup",
    "shutdown",
    "world",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
