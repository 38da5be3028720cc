"""What ``kiln serve`` monitors and where: the options, and the default state directory.

The state directory holds the prediction log (``monitor.db``, :mod:`kiln.monitor.store`). By
default it sits beside the model: ``<run>/serve_state/`` for a run directory, a package directory
or an export file inside one, so a run's traffic stays with the run. A ``models:/NAME@ALIAS``
URI names a model in a registry whose artifacts kiln must not write into, so its default is the
user's state directory, ``$XDG_STATE_HOME/kiln/serve/NAME/`` (``~/.local/state/kiln/serve/NAME/``),
shared by the versions of that name: every row records its version and the live metrics read only
the served version's rows. ``--state-dir`` overrides both.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import UsageError
from kiln.monitor.store import Retention

XDG_STATE_HOME = "XDG_STATE_HOME"  # the XDG base directory for state that persists (logs, history)
DEFAULT_ACCURACY_WINDOW = 1000
DEFAULT_DRIFT_WINDOW = 1000


@dataclass(frozen=True)
class MonitorOptions:
    """``kiln serve``'s monitoring: the log's place and retention, and the accuracy window."""

    state_dir: Path
    retention: Retention = field(default_factory=Retention)
    log_inputs: bool = False  # also store every instance in full (JSON)
    accuracy_window: int = DEFAULT_ACCURACY_WINDOW  # feedback rows kiln_model_accuracy covers
    drift_window: int = DEFAULT_DRIFT_WINDOW  # logged predictions the drift PSI covers

    def __post_init__(self) -> None:
        check(self.retention, self.accuracy_window, self.drift_window)


def check(retention: Retention, accuracy_window: int, drift_window: int = DEFAULT_DRIFT_WINDOW) -> None:
    """UsageError for a retention or window that is not a positive number."""
    for flag, window in (("--accuracy-window", accuracy_window), ("--drift-window", drift_window)):
        if window < 1:
            raise UsageError(f"{flag} must be at least 1, got {window}")
    for flag, value in (("--log-retention-days", retention.days), ("--log-max-mb", retention.max_mb)):
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"{flag} must be a positive number, got {value}")


def default_state_dir(package_dir: Path, registry_name: str | None) -> Path:
    """``<run>/serve_state`` for a local package (``package_dir`` is the run's ``models/``), or
    the user's state directory for a registered model ``registry_name``."""
    if registry_name:
        base = os.environ.get(XDG_STATE_HOME) or str(Path.home() / ".local" / "state")
        return Path(base) / "kiln" / "serve" / re.sub(r"[^A-Za-z0-9._-]", "_", registry_name)
    return package_dir.parent / "serve_state"
