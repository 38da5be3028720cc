"""Resuming a checkpoint on each rank, also with a different number of processes.

The same number of processes resumes exactly: each rank gets its own RNG state back, rank 0 the
job's partial-epoch metric sums, and every rank its position in its shard. A different number
continues correctly but not identically: the shards (and so the data order) change, and a
mid-epoch position is carried over as the share of the epoch already seen.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kiln.distributed.group import world
from kiln.train.ranks.rng import restore_own, saved_world_size
from kiln.train.ranks.scaling import batch_plan

if TYPE_CHECKING:
    from kiln.train.setup import Components
    from kiln.train.state import TrainState

log = logging.getLogger("kiln")


def restore_rank_state(c: Components, state: TrainState, trainer_state: dict[str, Any]) -> None:
    """Put back this rank's RNG state and, when the world size changed, remap the position."""
    saved = trainer_state["rng"]
    before, now = saved_world_size(saved), world()
    if before != now.size:
        old = batch_plan(c.config, before)
        new = batch_plan(c.config, now.size)
        position = state.batch_in_epoch
        accum = c.config.training.grad_accum
        dropped = bool(trainer_state["grads"]) and _drop_gradients(c)
        if position:
            # Inside a window, the restored gradients held its first batches; the new world's
            # windows cut the samples elsewhere, so they are dropped and those batches trained
            # again from the window's start: no gradient counted twice, none left without a step.
            start = position - position % accum if dropped else position
            consumed = start * old.per_process_batch * before  # samples of this epoch, job-wide
            remapped = min(consumed // (new.per_process_batch * now.size), state.steps_per_epoch)
            state.batch_in_epoch = remapped - remapped % accum
        if now.is_zero and dropped:
            log.warning(
                "the checkpoint was taken inside a gradient-accumulation window (batch %d, grad_accum=%d): "
                "its partial gradients were dropped and the window is trained again from its start on %d "
                "process(es)", position, accum, now.size,
            )
        if now.is_zero:
            log.warning(
                "resuming a run checkpointed with %d process(es) on %d: the data order from here on "
                "differs from an uninterrupted run (each rank's shard changes)%s; effective batch "
                "%d -> %d; the optimizer keeps the learning rate it was saved with (%s)",
                before, now.size,
                f", and the epoch continues at batch {state.batch_in_epoch} of {state.steps_per_epoch} "
                f"(was {position} with {before})" if position else "",
                old.effective_batch, new.effective_batch,
                f"lr_scaling={new.lr_scaling}" if new.lr_scaling != "none" else "no lr scaling",
            )
    restore_own(saved)


def _drop_gradients(c: Components) -> bool:
    """Forget the accumulated gradients a checkpoint put back; True when there were any."""
    found = False
    for p in c.model.parameters():
        found = found or p.grad is not None
        p.grad = None
    return found
