"""Watching one metric for improvement: shared by early stopping, checkpointing and LR plateaus."""

from __future__ import annotations

import math
from typing import Any, Literal

from kiln.errors import ConfigError


class Monitor:
    """Tracks the best value of ``metric`` and how many epochs passed without improving it.

    >>> m = Monitor("val_loss", "min", min_delta=0.0)
    >>> m.update({"val_loss": 1.0}), m.update({"val_loss": 2.0}), m.wait
    (True, False, 1)
    """

    def __init__(self, metric: str, mode: Literal["min", "max"], min_delta: float = 0.0) -> None:
        self.metric = metric
        self.mode = mode
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0

    def value(self, metrics: dict[str, float], owner: str) -> float:
        """The watched value; a metric that does not exist lists the ones that do."""
        if self.metric not in metrics:
            raise ConfigError(
                f"{owner}.monitor: metric {self.metric!r} is not measured. "
                f"Available: {', '.join(sorted(metrics))}"
            )
        return float(metrics[self.metric])

    def is_improvement(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, metrics: dict[str, float], epoch: int = 0, owner: str = "monitor") -> bool:
        """Record this epoch's value; True when it is the new best."""
        value = self.value(metrics, owner)
        if self.is_improvement(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
