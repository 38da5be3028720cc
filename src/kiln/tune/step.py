"""One optimizer step as the Trainer takes it, for the finders: ``training.grad_accum``
micro-batches under the run's precision (autocast; fp16 through a loss scaler), the L2 penalty
and ``training.grad_clip``.

The finders time nothing and read the loss of every step, so this step reads it (one host sync a
step): the Trainer's loop avoids that, a finder needs the number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kiln.train.evaluate import autocast
from kiln.train.optim import l2_penalty, weight_matrices
from kiln.tune.workbench import Workbench


def new_scaler(bench: Workbench) -> torch.amp.GradScaler:
    """A loss scaler, enabled for ``training.precision: fp16`` only (fp16 gradients underflow
    without one; bf16 and fp32 have fp32's exponent range)."""
    fp16 = str(bench.config.training.precision) == "fp16"
    return torch.amp.GradScaler(bench.device.type, enabled=fp16)


def train_step(bench: Workbench, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, micro_batches: Sequence[Any]) -> float:
    """Train ``model`` on ``micro_batches`` (one optimizer step); the mean loss, or a non-finite
    float when the loss diverged (the step is then not taken)."""
    t = bench.config.training
    device = bench.device
    l2_weights = weight_matrices(model) if t.l2 > 0 else []
    model.train()
    total = torch.zeros((), device=device)
    for batch in micro_batches:
        inputs, targets = bench.task.split_batch(batch)
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, t.precision):
            outputs = model(inputs)
        loss = bench.task.loss(outputs.float(), targets)
        objective = loss + l2_penalty(l2_weights, t.l2) if l2_weights else loss
        scaler.scale(objective / len(micro_batches)).backward()  # type: ignore[no-untyped-call]
        total += loss.detach()
    mean = float(total) / len(micro_batches)
    if not torch.isfinite(torch.tensor(mean)):
        optimizer.zero_grad(set_to_none=True)
        return mean
    if t.grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return mean


def micro_batches(bench: Workbench, batch_size: int) -> Any:
    """Endless groups of ``training.grad_accum`` training batches, epoch after epoch in the run's
    order (a finder may need more steps than one epoch holds)."""
    accum = bench.config.training.grad_accum
    epoch = 0
    group: list[Any] = []
    while True:
        empty = True
        for batch in bench.loader(batch_size, epoch):
            empty = False
            group.append(batch)
            if len(group) == accum:
                yield group
                group = []
        if empty:
            return
        epoch += 1
