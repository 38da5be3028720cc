"""The run directory: ``<output_dir>/<name>_<YYYYmmdd_HHMMSS>/`` and the paths inside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# The run's JSON and text files are written atomically by these (kept at the bottom of the layers,
# where kiln.models.package can reach them too); re-exported here, beside the paths they write.
from kiln._files import read_json as read_json
from kiln._files import write_json as write_json
from kiln._files import write_text as write_text

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RunPaths:
    """Where each file of a run lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def events(self) -> Path:
        return self.logs / "events.jsonl"

    @property
    def csv_log(self) -> Path:
        return self.logs / "training_log.csv"

    @property
    def tensorboard(self) -> Path:
        return self.logs / "tensorboard"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


def create_run_dir(output_dir: Path, name: str, now: datetime | None = None) -> RunPaths:
    """Create a new, empty run directory; a name collision gets a suffix, never an overwrite."""
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    base = f"{_SAFE.sub('-', name).strip('-') or 'run'}_{stamp}"
    output_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = output_dir / (base if attempt == 1 else f"{base}_{attempt}")
        try:
            candidate.mkdir()  # atomic: fails if another run (or process) took the name
        except FileExistsError:
            continue
        paths = RunPaths(candidate)
        paths.logs.mkdir()
        paths.models.mkdir()
        return paths
    raise FileExistsError(f"could not find a free run directory name for {base!r} in {output_dir}")
