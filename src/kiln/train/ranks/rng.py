"""Every rank's RNG state in the checkpoint, and each rank getting its own back.

A single-process checkpoint keeps the flat format of ``kiln.train.rng.capture_rng``; a
distributed one holds ``{"per_rank": [state of rank 0, rank 1, ...]}`` (rank 0 writes it).
"""

from __future__ import annotations

import logging
from typing import Any

from kiln.distributed.group import all_gather_object, world
from kiln.train.rng import capture_rng, restore_rng

log = logging.getLogger("kiln")


def capture_all() -> dict[str, Any]:
    """This process's RNG state, or every rank's when distributed (a collective)."""
    local = capture_rng()
    if not world().distributed:
        return local
    return {"per_rank": all_gather_object(local)}


def saved_world_size(saved: dict[str, Any]) -> int:
    """How many processes wrote the checkpoint these RNG states come from."""
    return len(saved["per_rank"]) if "per_rank" in saved else 1


def restore_own(saved: dict[str, Any]) -> None:
    """Put back this rank's state; a rank the checkpoint did not have takes rank 0's."""
    if "per_rank" not in saved:
        restore_rng(saved)
        return
    states = saved["per_rank"]
    rank = world().rank
    restore_rng(states[rank] if rank < len(states) else states[0])
