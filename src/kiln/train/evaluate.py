"""One pass over a split without gradients: the metrics of a model on some data."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from kiln.tasks import Task
from kiln.train.precision import autocast as autocast  # re-exported: its old home


def scored_batches(
    model: nn.Module,
    loader: DataLoader[Any],
    task: Task,
    device: torch.device,
    meter: Any,
    precision: str = "fp32",
    max_batches: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Each batch's float outputs and targets, with the model in eval mode, fed to ``meter`` on
    the way (one loop for :func:`evaluate` and for ``kiln eval``'s collection of outputs).
    Call it under ``torch.no_grad()``; the model's train/eval mode is put back at the end."""
    was_training = model.training
    model.eval()
    try:
        for batch in itertools.islice(loader, max_batches):
            inputs, targets = task.split_batch(batch)
            inputs, targets = inputs.to(device), targets.to(device)
            with autocast(device, precision):
                outputs = model(inputs)
            outputs = outputs.float()
            meter.update(outputs, targets, task.loss(outputs, targets))
            yield outputs, targets
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    task: Task,
    device: torch.device,
    precision: str = "fp32",
    max_batches: int | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` over ``loader`` (keys as the task names them: loss, accuracy, ...).

    ``max_batches`` caps the pass (``training.eval_batches``): always the first batches, so
    every evaluation of a run scores the same samples and the figures stay comparable."""
    meter = task.meter()
    for _ in scored_batches(model, loader, task, device, meter, precision, max_batches):
        pass
    return meter.compute()
