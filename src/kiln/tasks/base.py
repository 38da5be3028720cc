"""The task: what a batch is, which loss applies, and which metrics are measured.

The loop never looks inside a batch or at a metric: it asks the task. Classification, binary
classification and regression live here; next-token language modeling fits the same protocol.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor


class Meter(Protocol):
    """Accumulates metrics over batches on the device, syncing only in ``compute``."""

    def update(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Task(Protocol):
    """One kind of supervised problem."""

    @property
    def name(self) -> str: ...

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Return ``(inputs, targets)`` from whatever the DataLoader yields."""
        ...

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean loss over the batch."""
        ...

    def meter(self) -> Meter:
        """A fresh accumulator for one pass over a split."""
        ...

    def to(self, device: torch.device) -> Task:
        """Move any state (class weights) to ``device``."""
        ...

    def predict(self, outputs: Tensor) -> Tensor:
        """Turn model outputs into predictions (class indices or values)."""
        ...
