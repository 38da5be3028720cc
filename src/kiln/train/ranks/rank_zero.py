"""Stand-ins for the parts only rank 0 runs: trackers and checkpoint writes.

The other ranks keep the same callbacks (so they join every collective a checkpoint needs, such as
gathering RNG states) but write nothing: two processes appending to one events.jsonl or
committing one checkpoint directory would corrupt them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kiln.checkpoint import CheckpointManager
from kiln.checkpoint.manager import checkpoint_name
from kiln.tracking.base import Scope
from kiln.tracking.multi import MultiTracker


class NullTracker(MultiTracker):
    """A MultiTracker that records nothing (ranks other than 0)."""

    def __init__(self) -> None:  # no jsonl file, no background thread
        self.failures: dict[str, str] = {}
        self.dropped = 0
        self.unsent = 0

    @property
    def names(self) -> list[str]:
        return []

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        pass

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: Path) -> None:
        pass

    def log_model(self, model: Any, package_dir: Path, example: Any) -> None:
        pass

    def replay(self, records: list[dict[str, Any]]) -> None:
        pass

    def flush(self, timeout: float = 30.0) -> None:
        pass

    def close(self, status: str, timeout: float = 60.0) -> None:
        pass


class NullCheckpointManager(CheckpointManager):
    """Answers like a CheckpointManager but never touches the disk (ranks other than 0)."""

    def __init__(self, directory: Path, mode: str) -> None:  # no mkdir, no leftover cleanup
        self.directory = directory
        self.keep_best_n = self.keep_last_n = 1
        self.mode = mode
        self._executor = None
        self._pending = None

    def save(
        self,
        model_state: dict[str, torch.Tensor],
        optimizer_state: dict[str, Any],
        trainer_state: dict[str, Any],
        meta: dict[str, Any],
    ) -> Path:
        return self.directory / checkpoint_name(meta["epoch"], meta["global_step"], meta["batch_in_epoch"])

    def prune(self) -> list[Path]:
        return []
