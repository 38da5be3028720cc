"""Feeds the run's trackers from loop events: params at start, step and epoch metrics, the end."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from kiln.tracking.base import flatten
from kiln.tracking.multi import MultiTracker
from kiln.train.callback import Callback
from kiln.train.state import TrainState


class TrackingCallback(Callback):
    def __init__(self, tracker: MultiTracker, log_every_n_steps: int, params: dict[str, Any]) -> None:
        self.tracker = tracker
        self.every = log_every_n_steps
        self.params = params

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.tracker.log_params(flatten(self.params))
        self.tracker.log_event("fit_start", {**state.counters(), "history": None})

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if state.optimizer_stepped and state.global_step % self.every == 0 and state.batch_loss is not None:
            lr = state.optimizer.param_groups[0]["lr"]
            loss = float(state.batch_loss.item())
            metrics = {"train_loss": loss, "lr": lr}
            if "grad_norm" in state.extras:  # set by the loop when training.grad_clip is on
                metrics["grad_norm"] = float(state.extras["grad_norm"])
            self.tracker.log_metrics(metrics, state.global_step, "step")

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        self.tracker.log_metrics(state.metrics, state.global_step, "epoch")

    @override
    def on_fit_end(self, state: TrainState) -> None:
        self.tracker.log_event(
            "fit_end",
            {"status": state.status, "epochs": state.epoch, "global_step": state.global_step,
             "stop_reason": state.stop_reason},
        )

    @override
    def on_exception(self, state: TrainState) -> None:
        error = state.error
        self.tracker.log_event(
            "exception",
            {"type": type(error).__name__, "message": str(error), "epoch": state.epoch + 1,
             "global_step": state.global_step},
        )
