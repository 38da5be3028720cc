"""Early stopping: stop when the monitored metric stops improving, and restore the best weights."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from kiln.config.schema import EarlyStoppingConfig
from kiln.train.callback import Callback
from kiln.train.callbacks.monitor import Monitor
from kiln.train.state import TrainState


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without an improvement of at least ``min_delta``.

    With ``restore_best_weights`` the model ends training with the weights of its best epoch
    (kept as a CPU copy, taken each time the metric improves).
    """

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.monitor = Monitor(cfg.monitor, cfg.mode, cfg.min_delta)
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        improved = self.monitor.update(state.metrics, state.epoch, "training.early_stopping")
        if improved and self.cfg.restore_best_weights:
            self.best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()
            }
        if self.monitor.wait >= self.cfg.patience:
            self.stopped_epoch = state.epoch
            state.request_stop(
                f"early stopping: {self.cfg.monitor} did not improve for {self.cfg.patience} "
                f"epochs (best {self.monitor.best:.6g} at epoch {self.best_epoch})"
            )

    @property
    def best_epoch(self) -> int | None:
        """The 1-based best epoch, as people count epochs."""
        return None if self.monitor.best_epoch is None else self.monitor.best_epoch + 1

    @override
    def on_fit_end(self, state: TrainState) -> None:
        if self.cfg.restore_best_weights and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
            state.extras["restored_best_epoch"] = self.best_epoch
        state.extras["best_epoch"] = self.best_epoch
        state.extras["best_" + self.cfg.monitor] = self.monitor.best

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor.state_dict(),
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]
