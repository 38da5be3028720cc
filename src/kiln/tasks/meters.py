"""Metric accumulators. Sums stay on-device tensors so a training step never waits on a sync."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Sums:
    """Running sums of named quantities plus a sample count."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, name: str, value: Tensor, weight: float = 1.0) -> None:
        """Add ``value * weight`` to the float64 sum: one in-place op per call, as this runs every step."""
        total = self.sums.get(name)
        if total is None:
            self.sums[name] = value.detach().to(torch.float64, copy=True) * weight
        else:
            total.add_(value.detach(), alpha=weight)

    def mean(self, name: str) -> float:
        if self.count == 0 or name not in self.sums:
            return float("nan")
        return float(self.sums[name].item()) / self.count

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sums": {k: v.cpu() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.sums = {k: v.clone() for k, v in state["sums"].items()}


class ClassificationMeter(Sums):
    """Mean loss and accuracy; ``binary`` reads one logit per sample."""

    def __init__(self, binary: bool = False) -> None:
        super().__init__("loss", "correct")
        self.binary = binary

    def update(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        n = targets.shape[0]
        if self.binary:
            predicted = (outputs.detach().reshape(-1) > 0).to(targets.dtype)
        else:
            predicted = outputs.detach().argmax(dim=-1)
        self.add("loss", loss, weight=n)
        self.add("correct", (predicted == targets.reshape(predicted.shape)).sum())
        self.count += n

    def compute(self) -> dict[str, float]:
        return {"loss": self.mean("loss"), "accuracy": self.mean("correct")}


class RegressionMeter(Sums):
    """Mean loss, mean absolute error and root mean squared error."""

    def __init__(self) -> None:
        super().__init__("loss", "abs", "sq")

    def update(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        n = targets.shape[0]
        error = outputs.detach().reshape(n, -1).float() - targets.reshape(n, -1).float()
        self.add("loss", loss, weight=n)
        self.add("abs", error.abs().mean(dim=1).sum())
        self.add("sq", error.pow(2).mean(dim=1).sum())
        self.count += n

    def compute(self) -> dict[str, float]:
        return {"loss": self.mean("loss"), "mae": self.mean("abs"), "rmse": self.mean("sq") ** 0.5}
