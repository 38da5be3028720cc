"""``logs/tensorboard/``: TensorBoard event files. Every scalar's step is the optimizer step, so
epoch metrics, per-step metrics (under ``step/``) and test metrics (under ``test/``) share one axis."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiln.tracking.base import Scope, Tracker, TrackerSetup


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, log_dir: Path) -> None:
        # Imported here: tensorboard takes about a second to import and runs on the fan-out thread.
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log_params(self, params: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in sorted(params.items()))
        self._writer.add_text("config", text)

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        prefix = "" if scope == "epoch" else f"{scope}/"
        for key, value in metrics.items():
            self._writer.add_scalar(prefix + key, value, step)

    def log_event(self, event: str, data: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self, status: str) -> None:
        self._writer.flush()
        self._writer.close()


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """The TRACKERS entry: ``logs/tensorboard/`` (TensorBoard itself is imported on the fan-out
    thread, by the constructor)."""
    return functools.partial(TensorBoardTracker, setup.logs_dir / "tensorboard")
