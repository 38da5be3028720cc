"""Decides when to checkpoint (every N epochs / steps, at the end, on a signal) and saves through the
CheckpointManager. What goes into a checkpoint is kiln.train.snapshot's business.

A checkpoint that cannot be written (a full disk, a read-only file system) stops the run: its
``checkpoint_failed`` record goes to events.jsonl and its CheckpointWriteError (exit 1) says where
a resume starts. With ``checkpoint.async_save`` the failure surfaces the same way, on the training
thread, at the first batch end after the background write failed, and at the latest when the
run ends: never later, from the run's clean-up, where it would hide the run's own outcome.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from typing_extensions import override

from kiln._version import __version__
from kiln.checkpoint import CheckpointManager
from kiln.config.schema import CheckpointConfig
from kiln.errors import CheckpointWriteError
from kiln.train.callback import Callback
from kiln.train.callbacks.monitor import Monitor
from kiln.train.state import TrainState

log = logging.getLogger("kiln.checkpoint")


class Checkpointing(Callback):
    def __init__(
        self,
        cfg: CheckpointConfig,
        manager: CheckpointManager,
        capture: Callable[[TrainState], dict[str, Any]],
        meta: Callable[[], dict[str, Any]],
        log_event: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.manager = manager
        self.capture = capture
        self.meta = meta  # run-level facts: config hash, git commit, events.jsonl offset
        self.log_event = log_event  # the run's tracker: where a failed save is recorded
        self.monitor = Monitor(cfg.monitor, cfg.mode)
        self.last_saved: tuple[int, int, int] | None = None

    @override
    def on_batch_end(self, state: TrainState) -> None:
        self._surfacing(state, self.manager.raise_if_failed)
        n = self.cfg.every_n_steps
        if n and state.optimizer_stepped and state.global_step % n == 0:
            state.request_checkpoint("periodic")

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        self.monitor.value(state.metrics, "checkpoint")  # fail early, listing the metrics that exist
        n = self.cfg.every_n_epochs
        if n and (state.epoch + 1) % n == 0:
            state.request_checkpoint("periodic")

    @override
    def on_fit_start(self, state: TrainState) -> None:
        """A resumed run starts where its checkpoint is: a signal before its first step must not
        write that position again (the copy it resumed from already holds it, exactly)."""
        if state.global_step > 0:
            self.last_saved = (state.global_step, state.epoch, state.batch_in_epoch)

    @override
    def on_checkpoint(self, state: TrainState) -> None:
        if state.failed:  # the NaN guard put the last good weights back, but not the optimizer's state
            return
        self.save(state, reason=state.checkpoint_reason or "periodic")

    @override
    def on_fit_end(self, state: TrainState) -> None:
        self._surfacing(state, self.manager.wait)  # the last save's failure fails the run here

    @override
    def on_exception(self, state: TrainState) -> None:
        """The run failed for another reason: a background save failing too is recorded, and must
        not raise from the run's clean-up over the error that ended it."""
        try:
            self._surfacing(state, self.manager.wait)
        except Exception as exc:  # CheckpointWriteError is already recorded by _surfacing
            log.warning("the checkpoint being written in the background failed too: %s", exc)

    def save(self, state: TrainState, reason: str) -> None:
        position = (state.global_step, state.epoch, state.batch_in_epoch)
        if position == self.last_saved:
            return
        at_boundary = state.batch_in_epoch == 0 and bool(state.history)
        value = state.history[-1].get(self.cfg.monitor) if at_boundary else None
        meta = {
            "epoch": state.epoch,
            "global_step": state.global_step,
            "batch_in_epoch": state.batch_in_epoch,
            "reason": reason,
            "metrics": state.history[-1] if state.history else {},
            "monitor": self.cfg.monitor,
            "monitor_value": None if value is None or math.isnan(value) else value,
            "kiln_version": __version__,
            **self.meta(),
        }
        path = self._surfacing(state, lambda: self.manager.save(
            state.model.state_dict(), state.optimizer.state_dict(), self.capture(state), meta
        ))
        self.last_saved = position
        state.last_checkpoint = path
        state.extras["last_checkpoint"] = str(path)  # summary.json's key, until its writer reads the field

    def _surfacing(self, state: TrainState, call: Callable[[], Any]) -> Any:
        """``call()``; a checkpoint it could not write is recorded in events.jsonl and re-raised
        with the command that resumes this run."""
        try:
            return call()
        except CheckpointWriteError as exc:
            if self.log_event is not None:
                self.log_event("checkpoint_failed", exc.record())
            exc.hint = f"{exc.hint}; then: kiln resume {state.run_dir}"
            raise
