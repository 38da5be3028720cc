"""Tiny digits MLPs for the precision and memory tests, named by model.target: one whose logits
overflow fp16's scaled gradients until the loss scaler has backed off, one that raises torch's real
out-of-memory error at a chosen training batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kiln.data.spec import DataSpec


class _MLP(nn.Module):
    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 16), nn.ReLU(),
                                 nn.Linear(16, spec.num_classes))


class Spiky(_MLP):
    """Logits times ``scale``: with fp16 and the scaler's first scale (65536), the scaled
    gradients of the logits pass fp16's 65504, so the first steps are skipped while the scale
    halves, deterministically."""

    def __init__(self, spec: DataSpec, scale: float = 300.0) -> None:
        super().__init__(spec)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * self.scale  # type: ignore[no-any-return]


class OutOfMemoryAt(_MLP):
    """Raises ``torch.OutOfMemoryError`` (what a CUDA allocation that fails raises) in training
    batch ``at`` (1-based) of this process."""

    def __init__(self, spec: DataSpec, at: int) -> None:
        super().__init__(spec)
        self.at = at
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"
                )
        return self.net(x)  # type: ignore[no-any-return]
