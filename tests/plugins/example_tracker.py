"""An example third-party tracker, the whole of it: a class that follows kiln's Tracker protocol
and the ``prepare`` its TRACKERS entry names. It appends one line per epoch to ``logs/metrics.txt``.

Registered by ``TRACKERS.register("textlog", "tests.plugins.example_tracker:prepare", ...)``, it is
used by naming it in the config: ``tracking.backends=[jsonl, textlog]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiln.tracking.base import Scope, Tracker, TrackerSetup


class TextLogTracker:
    """``step 12: loss=0.25 val_loss=0.31`` for each epoch's metrics; everything else is ignored."""

    name = "textlog"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        if scope == "epoch":
            values = " ".join(f"{key}={value:.4g}" for key, value in sorted(metrics.items()))
            self._file.write(f"step {step}: {values}\n")

    def log_event(self, event: str, data: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self, status: str) -> None:
        self._file.write(f"closed: {status}\n")
        self._file.close()


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """Called before the run trains; the tracker itself is built on kiln's fan-out thread."""
    return functools.partial(TextLogTracker, setup.logs_dir / "metrics.txt")
