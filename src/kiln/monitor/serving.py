"""What one server process holds for monitoring: its log writer, its connection for feedback and
scrapes, and the collectors; built by ``kiln.serve.app.create_app`` when monitoring is on.

When the model package holds reference statistics, a copy is written into the state directory
(``reference_NAME_VERSION.json``), so ``kiln monitor report STATE_DIR`` finds what the log's
predictions compare against even for a ``models:/`` model whose package lives elsewhere."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.models.reference import Reference, write_reference
from kiln.monitor import feedback
from kiln.monitor.collector import FeedbackCollector
from kiln.monitor.drift_collector import DriftCollector
from kiln.monitor.options import MonitorOptions
from kiln.monitor.store import DB_NAME, SharedConnection, create
from kiln.monitor.summary import InputSummary
from kiln.monitor.writer import LoggedModel, PredictionLog


@dataclass
class Monitoring:
    """The prediction log, feedback and live accuracy of one served model, in one process."""

    path: Path
    log: PredictionLog
    db: SharedConnection
    collector: FeedbackCollector
    class_names: Sequence[str]
    drift: DriftCollector | None = None  # None: the package has no reference statistics

    @classmethod
    def open(cls, options: MonitorOptions, name: str, version: str, class_names: Sequence[str],
             summary: InputSummary, on_drop: Callable[[int], None] | None = None,
             reference: Reference | None = None) -> Monitoring:
        path = options.state_dir / DB_NAME
        if not path.is_file():
            create(options.state_dir)  # kiln serve creates it in the parent; a library user may not
        model = LoggedModel(name, version, list(class_names), summary)
        plog = PredictionLog(path, model, options.retention, log_inputs=options.log_inputs,
                             on_drop=on_drop)
        db = SharedConnection(path)
        collector = FeedbackCollector(db, name, version, options.accuracy_window)
        drift = None
        if reference is not None:
            write_reference(options.state_dir / reference_name(name, version), reference)
            drift = DriftCollector(db, name, version, reference, options.drift_window)
        return cls(path, plog, db, collector, list(class_names), drift)

    def start(self) -> None:
        self.log.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit every queued prediction, then close (the app's shutdown)."""
        self.log.stop(timeout)
        self.db.close()

    def feedback(self, body: bytes) -> dict[str, Any]:
        """Parse, join and record a ``/feedback`` body (blocking: run it off the event loop)."""
        items = feedback.parse(body, self.class_names)
        with self.db.use() as connection:
            return feedback.record(connection, items, self.class_names)


def reference_name(model: str, version: str) -> str:
    """The file name of a model version's reference statistics in a state directory."""
    return "reference_" + re.sub(r"[^A-Za-z0-9._-]", "_", f"{model}_{version}") + ".json"
