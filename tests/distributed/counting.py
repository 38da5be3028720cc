"""SlowMLP that tells, when its process exits, how many training batches it ran (used through
model.target): each rank's own report of where it stopped, since only rank 0 prints one. The file
is ``$KILN_BATCHES_DIR/rank<RANK>.txt``; without that variable nothing is written."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from torch import Tensor

from kiln.data.spec import DataSpec
from tests.distributed.slow import SlowMLP


class CountingSlowMLP(SlowMLP):
    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)
        self.batches = 0
        directory = os.environ.get("KILN_BATCHES_DIR")
        if directory:
            atexit.register(self._report, Path(directory) / f"rank{os.environ.get('RANK', '-1')}.txt")

    def _report(self, path: Path) -> None:
        path.write_text(f"{self.batches}\n", encoding="utf-8")

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.batches += 1
        return super().forward(x)
