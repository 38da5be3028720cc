"""``logs/training_log.csv``: one row per epoch, the columns fixed by the first epoch's metrics."""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiln.tracking.base import Scope, Tracker, TrackerSetup


class CsvTracker:
    name = "csv"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._columns: list[str] | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        if scope != "epoch":
            return
        row = dict(metrics)
        if self._columns is None:
            self._columns = list(row)
            with self.path.open("w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self._columns)
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self._columns])

    def log_event(self, event: str, data: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self, status: str) -> None: ...


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """The TRACKERS entry: ``logs/training_log.csv``."""
    return functools.partial(CsvTracker, setup.logs_dir / "training_log.csv")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
