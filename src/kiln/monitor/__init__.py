"""Know how a served model is doing: the prediction log, ground-truth feedback and live accuracy.

``kiln serve`` appends every prediction to a SQLite log in its state directory (off the request
path, safe with ``--workers N``), takes true labels at ``POST /feedback`` and exports live
accuracy on ``/metrics``; ``kiln monitor export`` writes the log as CSV or Parquet. Nothing here
imports torch: the server stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports

if TYPE_CHECKING:
    from kiln.monitor.export import export_log, find_log
    from kiln.monitor.options import MonitorOptions, default_state_dir
    from kiln.monitor.store import Retention
    from kiln.monitor.writer import PredictionLog

_PUBLIC = {
    "MonitorOptions": "kiln.monitor.options",
    "default_state_dir": "kiln.monitor.options",
    "Retention": "kiln.monitor.store",
    "PredictionLog": "kiln.monitor.writer",
    "export_log": "kiln.monitor.export",
    "find_log": "kiln.monitor.export",
}

__all__ = ["MonitorOptions", "PredictionLog", "Retention", "default_state_dir", "export_log", "find_log"]

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
