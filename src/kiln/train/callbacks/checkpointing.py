"""Decides when to checkpoint (every N epochs / steps, at the end, on a signal) and saves through the
CheckpointManager. What goes into a checkpoint is kiln.train.snapshot's business."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from typing_extensions import override

from kiln._version import __version__
from kiln.checkpoint import CheckpointManager
from kiln.config.schema import CheckpointConfig
from kiln.train.callback import Callback
from kiln.train.callbacks.monitor import Monitor
from kiln.train.state import TrainState


class Checkpointing(Callback):
    def __init__(
        self,
        cfg: CheckpointConfig,
        manager: CheckpointManager,
        capture: Callable[[TrainState], dict[str, Any]],
        meta: Callable[[], dict[str, Any]],
    ) -> None:
        self.cfg = cfg
        self.manager = manager
        self.capture = capture
        self.meta = meta  # run-level facts: config hash, git commit, events.jsonl offset
        self.monitor = Monitor(cfg.monitor, cfg.mode)
        self.last_saved: tuple[int, int, int] | None = None

    @override
    def on_batch_end(self, state: TrainState) -> None:
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
    def on_checkpoint(self, state: TrainState) -> None:
        self.save(state, reason=state.checkpoint_reason or "periodic")

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
        path = self.manager.save(
            state.model.state_dict(), state.optimizer.state_dict(), self.capture(state), meta
        )
        self.last_saved = position
        state.last_checkpoint = path
        state.extras["last_checkpoint"] = str(path)  # summary.json's key, until its writer reads the field
