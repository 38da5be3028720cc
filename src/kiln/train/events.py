"""The events the Trainer fires, in the order the loop fires them.

The loop, in pseudo-code. Each ``-> event`` is a dispatch to every callback's ``on_<event>(state)``;
the bracket names the ``Trainer`` method whose code fires it there. Every dispatch in the code has
exactly one such line and every line one dispatch: tests/train/test_events.py reads this text
and kiln's source and fails when they differ. Events fire nowhere else (``kiln.train.run``,
``kiln.train.ranks`` and the callbacks only act on the state)::

    prepare the run (kiln.train.run.prepare): seed, build, restore the checkpoint when resuming
    -> fit_start                                                       [_fit]
    for epoch in epochs (from state.epoch, so a resumed run continues; or until training.max_steps):
        -> epoch_start                                                 [_loop]
        for batch in the epoch's remaining batches (from state.batch_in_epoch):
            -> batch_start                                             [_train_epoch]
            forward, loss, backward; every grad_accum batches: clip, optimizer step
            -> batch_end                                               [_train_epoch]
                   (state.batch_loss, still on the device, and state.optimizer_stepped; every
                   training.eval_every_n_steps: validation at step scope, inside batch_end)
            leave the epoch if state.stop_requested or training.max_steps is reached
            -> checkpoint   when one was requested (state.request_checkpoint)  [_train_epoch]
        on a device out-of-memory error in a batch: free it, then, at the start of an accumulation window,
            -> checkpoint   reason "out_of_memory"; raise DeviceOutOfMemory   [_out_of_memory]
        on a signal (state.stop_signal): leave the loop, the epoch unfinished
        -> validation_start                                            [_loop]
        evaluate on the validation split
        -> validation_end   (state.metrics holds train_* and val_*)    [_loop]
        -> epoch_end        (early stopping, LR schedule, trackers)    [_loop]
        if training.max_steps ended the epoch early:
            -> checkpoint   when requested; leave the loop             [_loop]
        -> checkpoint       when requested                             [_loop]
        stop if state.stop_requested
    on a signal (SIGINT/SIGTERM, agreed by every rank):
        -> checkpoint       reason "signal"                            [_interrupted]
        -> fit_end          the summary is written next                [_interrupted]
        raise TrainingInterrupted (exit code 130 or 143)
    -> checkpoint           reason "last" (checkpoint.save_last; not when state.failed)  [_fit]
    -> fit_end              (restore best weights; the test split is evaluated next)     [_fit]
    on any other error: -> exception (state.error), then the error propagates             [_fit]
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
