"""Distributed data-parallel training on PyTorch's own engine: torchrun launches, DDP averages
gradients, gloo (CPU) or NCCL (GPU) carries them. kiln adds the run-level parts: rank 0 alone
writes, metrics are reduced as sums, every rank's RNG is checkpointed, the batch size and LR
scaling are explicit, and a restarted job finds its run directory.

>>> from kiln.distributed import world
>>> world().size  # a plain process is a world of one
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports

if TYPE_CHECKING:
    from kiln.distributed.env import LaunchEnv, launch_env
    from kiln.distributed.group import (
        World,
        all_gather_object,
        all_reduce_max,
        broadcast_object,
        choose_backend,
        is_rank_zero,
        seed_rank,
        setup,
        shutdown,
        world,
    )
    from kiln.distributed.scaling import BatchPlan, batch_plan
    from kiln.errors import DistributedError

# Lazy: the CLI imports kiln.distributed.launch (argparse only) to build `kiln --help`; the group
# module imports torch, which takes over a second.
_GROUP = ("World", "all_gather_object", "all_reduce_max", "broadcast_object",
          "choose_backend", "is_rank_zero", "seed_rank", "setup", "shutdown", "world")
_PUBLIC = {
    **dict.fromkeys(_GROUP, "kiln.distributed.group"),
    "LaunchEnv": "kiln.distributed.env",
    "launch_env": "kiln.distributed.env",
    "BatchPlan": "kiln.distributed.scaling",
    "batch_plan": "kiln.distributed.scaling",
    "DistributedError": "kiln.errors",
}

__all__ = [
    "BatchPlan",
    "DistributedError",
    "LaunchEnv",
    "World",
    "all_gather_object",
    "all_reduce_max",
    "batch_plan",
    "broadcast_object",
    "choose_backend",
    "is_rank_zero",
    "launch_env",
    "seed_rank",
    "setup",
    "shutdown",
    "world",
]

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
