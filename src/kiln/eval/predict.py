"""One pass over a split that keeps every output: what the detailed metrics and plots are made of.

The task's meter is fed on the same pass, so ``loss`` and ``accuracy`` are exactly the numbers
training reported (label smoothing, class weights and all), and the data is read only once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from kiln.tasks import Task
from kiln.train.evaluate import scored_batches


@dataclass(frozen=True)
class Predictions:
    """Raw model outputs and targets of a split, in dataset order."""

    outputs: npt.NDArray[np.float32]  # (N, output_size)
    targets: npt.NDArray[Any]  # (N,) class indices, or (N, ...) regression values
    meter: dict[str, float]  # the task meter's metrics (loss, accuracy, ...)


@torch.no_grad()
def collect(
    model: nn.Module,
    loader: DataLoader[Any],
    task: Task,
    device: torch.device,
    precision: str = "fp32",
) -> Predictions:
    """Outputs and targets of ``model`` over ``loader`` (which must not shuffle)."""
    meter = task.meter()
    outputs, targets = [], []
    for out, target in scored_batches(model, loader, task, device, meter, precision):
        outputs.append(out.reshape(len(out), -1).cpu().numpy())
        targets.append(target.cpu().numpy())
    return Predictions(
        np.concatenate(outputs).astype(np.float32, copy=False), np.concatenate(targets), meter.compute()
    )
