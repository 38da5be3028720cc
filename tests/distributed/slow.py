"""A tiny digits MLP that sleeps a little in each training forward pass, so a test can reliably
kill a rank mid-epoch on a fast or a slow machine (used through model.target). Its dropout makes
every rank's RNG state matter for an exact resume."""

from __future__ import annotations

import math
import time

from torch import Tensor, nn

from kiln.data.spec import DataSpec


class SlowMLP(nn.Module):
    def __init__(self, spec: DataSpec, delay: float = 0.03, dropout: float = 0.2) -> None:
        super().__init__()
        self.delay = delay
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, spec.num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            time.sleep(self.delay)
        return self.net(x)  # type: ignore[no-any-return]
