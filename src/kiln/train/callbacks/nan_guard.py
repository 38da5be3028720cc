"""Stops training on a NaN or Inf loss, before the bad step touches the weights."""

from __future__ import annotations

from typing_extensions import override

from kiln.train.callback import Callback
from kiln.train.state import TrainState


class NanGuard(Callback):
    """The loop skips the optimizer step of a non-finite loss; this stops the run with a clear message.

    The model therefore keeps the last good weights, which are the ones saved.
    """

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if state.nonfinite_loss:
            state.request_stop(
                f"non-finite loss (NaN or Inf) at epoch {state.epoch + 1}, batch "
                f"{state.batch_in_epoch}; the step was skipped and the last good weights kept. "
                "Try a lower training.optimizer.lr, training.grad_clip, or check the data"
            )
            state.failed = True  # the run ends "failed", without a last checkpoint
