"""Tiny digits MLPs that misbehave on one rank at a chosen training batch (used through
model.target and model.options): one returns NaN, one sends itself SIGTERM. The rank is read from
torchrun's RANK variable; a process without it (a plain run, or the test process) is rank ``-1``.
"""

from __future__ import annotations

import math
import os
import signal

import torch
from torch import Tensor, nn

from kiln.data.spec import DataSpec


def _rank() -> int:
    return int(os.environ.get("RANK", "-1"))


class _MLP(nn.Module):
    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 16), nn.ReLU(),
                                 nn.Linear(16, spec.num_classes))
        self.calls = 0  # training forward passes so far in this process (1-based after the call)


class NanOnRank(_MLP):
    """Returns NaN logits on ``rank`` in training batch ``at`` (1-based) of this process."""

    def __init__(self, spec: DataSpec, rank: int, at: int) -> None:
        super().__init__(spec)
        self.rank, self.at = rank, at

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at and _rank() == self.rank:
                return out * torch.nan
        return out


class SigtermOnRank(_MLP):
    """Sends this process SIGTERM during training batch ``at`` (1-based) on ``rank``: kiln stops
    after exactly that batch, as the signal is noted before the batch's end."""

    def __init__(self, spec: DataSpec, rank: int, at: int) -> None:
        super().__init__(spec)
        self.rank, self.at = rank, at

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at and _rank() == self.rank:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.net(x)  # type: ignore[no-any-return]
