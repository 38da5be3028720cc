"""Stops training on a NaN or Inf loss and keeps the last weights known to be good, without making
an ordinary step wait for the device.

Reading a loss on the host (``.item()``, ``math.isfinite``) waits until the device has finished
every queued kernel: on a GPU, where a small model's step takes a fraction of a millisecond, one
read per step can halve the throughput. So the loop only keeps each batch's loss as a device tensor
(``state.batch_loss``); this guard collects them and reads them all at once at its check points:

- every ``tracking.log_every_n_steps`` optimizer steps (the step whose loss is logged anyway),
- before the validation at the end of each epoch, before every checkpoint, and at the end of the fit.

Between two checks the loop trains on, so a NaN may have reached the weights by the time it is
seen. Each check that finds every loss finite therefore keeps a copy of the weights (in host
memory); one that finds a NaN or Inf puts that copy back into the model, with the step count it
was taken at, and stops the run "failed": it stops within ``log_every_n_steps`` steps of the bad
batch, with the last good weights, and those are the ones saved. With several processes the ranks
agree at each check on the earliest bad batch of any rank.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from typing_extensions import override

from kiln.distributed.group import all_reduce_max
from kiln.train.callback import Callback
from kiln.train.state import TrainState

NONE = 2**62  # "no bad batch" in the ranks' agreement (the earliest bad batch wins)
# Losses held at most before a check regardless (a sync per this many batches is nothing): a long
# epoch with a rare log step would otherwise keep one small device tensor per batch alive.
MAX_PENDING = 1024


class NanGuard(Callback):
    """Checks the losses every ``every`` optimizer steps and at epoch ends, checkpoints and the
    end of the fit; on a non-finite one, restores the last good weights and fails the run.

    ``agree`` combines a value over ranks by its maximum (single process: the value itself).
    """

    def __init__(self, every: int, agree: Callable[[int], int] = all_reduce_max) -> None:
        self.every = every
        self.agree = agree
        self.pending: list[Tensor] = []  # losses since the last check, still on the device
        self.first_batch = 0  # the run-wide batch number of pending[0]
        self.good: dict[str, Tensor] = {}  # the weights at the last good check
        self.good_step = 0

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self._keep(state)  # a resumed run starts from checkpointed weights, which were checked

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if state.batch_loss is not None:
            if not self.pending:
                self.first_batch = _batch_number(state) - 1
            self.pending.append(state.batch_loss)
        if (state.optimizer_stepped and state.global_step % self.every == 0) or len(self.pending) >= MAX_PENDING:
            self.check(state)

    @override
    def on_validation_start(self, state: TrainState) -> None:
        self.check(state)

    @override
    def on_checkpoint(self, state: TrainState) -> None:
        self.check(state)

    @override
    def on_fit_end(self, state: TrainState) -> None:
        self.check(state)

    def check(self, state: TrainState) -> None:
        """Read the pending losses (one sync); keep the weights when all are finite, else put
        the last good ones back and stop the run."""
        if state.failed:
            return
        bad = NONE
        if self.pending:
            finite = torch.isfinite(torch.stack(self.pending))
            if not bool(finite.all()):
                bad = self.first_batch + int((~finite).nonzero()[0, 0])
        self.pending = []
        bad = -self.agree(-bad)  # the earliest over ranks
        if bad == NONE:
            self._keep(state)
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the kept copy's non-blocking transfers are complete
        state.model.load_state_dict(self.good)
        state.global_step = self.good_step
        epoch, batch = divmod(bad, state.steps_per_epoch)
        state.request_stop(
            f"non-finite loss (NaN or Inf) at epoch {epoch + 1}, batch {batch + 1}; the weights of "
            f"step {self.good_step}, the last checked good, were kept. Try a lower training.lr, "
            "training.grad_clip, or check the data"
        )
        state.failed = True  # the run ends "failed", without a last checkpoint

    def _keep(self, state: TrainState) -> None:
        """Refresh the host copy of the weights in place: buffers allocated once (pinned when the
        model is on CUDA) and filled with non-blocking copies, so a check neither allocates a
        model's worth of memory nor waits for the copy (it completes in stream order, before any
        later use of the weights; a restore synchronizes first)."""
        current = state.model.state_dict()
        if not self._fits(current):
            pin = torch.cuda.is_available() and any(v.is_cuda for v in current.values())
            self.good = {k: torch.empty(v.shape, dtype=v.dtype, device="cpu", pin_memory=pin)
                         for k, v in current.items()}
        for key, value in current.items():
            self.good[key].copy_(value.detach(), non_blocking=True)
        self.good_step = state.global_step

    def _fits(self, current: dict[str, torch.Tensor]) -> bool:
        """Whether the kept buffers have the model's keys, shapes and dtypes."""
        good = self.good
        return bool(good) and good.keys() == current.keys() and all(
            good[k].shape == v.shape and good[k].dtype == v.dtype for k, v in current.items())


def _batch_number(state: TrainState) -> int:
    """The batch just trained, counted from the run's first (1-based)."""
    return state.epoch * state.steps_per_epoch + state.batch_in_epoch
