"""Training's part of drift monitoring: ``reference.json`` in the model package, written at the end.

The validation split (the train split when there is none; its augmentation, if any, included)
goes once through the final model; the inputs, turned back into the dataset's units (what a
client sends to ``kiln serve``, before the run's normalization), and the model's answers as the
server gives them make :func:`kiln.models.reference.compute_reference`. At most ``MAX_SAMPLES``
samples, the first ones: the statistics are deciles, which a few thousand samples pin down, and
a large validation split should not make the end of every run slow.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.data.normalization import input_normalization
from kiln.data.spec import DataSpec
from kiln.models.answers import to_probabilities
from kiln.models.reference import REFERENCE, compute_reference, write_reference

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from kiln.tasks import Task
    from kiln.train.setup import Components

log = logging.getLogger("kiln")

MAX_SAMPLES = 10_000
SUPERVISED = ("classification", "binary", "regression")


def save_reference(c: Components) -> None:
    """Write ``reference.json`` beside ``model.json``; a failure is a warning (the model is saved
    and served all the same, without drift metrics), never the end of a finished run."""
    if c.spec.task not in SUPERVISED:
        return  # a language model's inputs are token ids: nothing kiln serve summarizes
    loader, split = (c.val_loader, "validation") if c.val_loader is not None else (c.train_loader, "train")
    try:
        raw, outputs = collect(c.model, loader, c.task, c.device, c.spec)
        write_reference(c.paths.models / REFERENCE, compute_reference(raw, outputs, c.spec, split))
    except Exception as exc:
        log.warning("reference statistics not saved (%s: %s): kiln serve will export no drift "
                    "metrics for this model", type(exc).__name__, exc)


def collect(model: nn.Module, loader: DataLoader[Any], task: Task, device: torch.device,
            spec: DataSpec, limit: int = MAX_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` inputs of ``loader`` in the dataset's units, and the model's outputs
    on them as the server answers (probabilities, or the value for regression)."""
    import torch

    mean, std = input_normalization(spec)
    inputs, outputs = [], []
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x, _ = task.split_batch(batch)
                x = x[: limit - seen]
                logits = model(x.to(device)).float().reshape(len(x), -1)
                inputs.append(x.cpu().double().numpy() * std + mean)
                outputs.append(to_probabilities(logits.cpu().numpy(), spec.task))
                seen += len(x)
                if seen >= limit:
                    break
    finally:
        model.train(was_training)
    return np.concatenate(inputs), np.concatenate(outputs)
