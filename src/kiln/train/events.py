"""The events the Trainer fires, in the order the loop fires them.

The loop, in pseudo-code (each ``-> event`` is a dispatch to every callback's ``on_<event>(state)``)::

    -> fit_start
    for epoch in epochs (from state.epoch, so a resumed run continues; or until training.max_steps):
        -> epoch_start
        for batch in the epoch's remaining batches (from state.batch_in_epoch):
            -> batch_start
            forward, loss, backward; every grad_accum batches: clip, optimizer step
            -> batch_end                    (state.batch_loss, state.optimizer_stepped)
            (every training.eval_every_n_steps: validation at step scope, inside batch_end)
            stop the epoch if state.stop_requested or training.max_steps is reached
        -> validation_start
        evaluate on the validation split
        -> validation_end                   (state.metrics holds train_* and val_*)
        -> epoch_end                        (early stopping, LR schedule, trackers)
        -> checkpoint                       (when a callback asked for one: state.checkpoint_requested)
        stop if state.stop_requested
    -> fit_end                              (restore best weights; the test split is evaluated next)
    on any error: -> exception              (state.error), then the error propagates
"""

from __future__ import annotations

from enum import Enum


class Event(str, Enum):
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BATCH_START = "batch_start"
    BATCH_END = "batch_end"
    VALIDATION_START = "validation_start"
    VALIDATION_END = "validation_end"
    EPOCH_END = "epoch_end"
    CHECKPOINT = "checkpoint"
    FIT_END = "fit_end"
    EXCEPTION = "exception"

    @property
    def hook(self) -> str:
        """Name of the callback method for this event."""
        return f"on_{self.value}"
