"""The run directory: ``<output_dir>/<name>_<YYYYmmdd_HHMMSS>/`` and the paths inside it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# The run's JSON and text files are written atomically by these (kept at the bottom of the layers,
# where kiln.models.package can reach them too); re-exported here, beside the paths they write.
from kiln._files import write_json as write_json
from kiln._files import write_text as write_text
from kiln.errors import PathError, RunError

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

    @property
    def data_report(self) -> Path:
        """What the dataset builder found: per-split, per-class counts, skipped files."""
        return self.root / "data_report.json"

    @property
    def data_splits(self) -> Path:
        """Every file of every split the run trains and is tested on (path, label, split, sha256),
        for image data: what eval, export and a resume build the run's data from
        (:mod:`kiln.data.images.recorded`)."""
        return self.root / "data_splits.csv"

    @property
    def preview(self) -> Path:
        """A grid of training samples as they reach the model (image data)."""
        return self.root / "preview.png"


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``: PathError naming it when it is missing, RunError when it is
    there but unreadable or not an object. For records a run must have; see read_json_if_present."""
    if not path.is_file():
        raise PathError(f"{path} is missing" + (" (it is a directory)" if path.is_dir() else ""))
    data = read_json_if_present(path)
    assert data is not None
    return data


def read_json_if_present(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file: for records whose absence
    is normal (eval metrics before ``kiln eval``, exports.json before ``kiln export``). A file that
    is there but unreadable, not JSON or not an object is a RunError naming it, never ``{}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                       hint="it was cut short or edited by hand; restore it or rerun the step that writes it") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} holds a JSON {type(data).__name__}, not the object kiln writes")
    return data


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


# What a start killed before it committed config.yaml can leave in a run directory: empty
# folders and the temporary file of the atomic write. A directory holding only these is free.
_LEFT_BEFORE_CONFIG = {"logs", "models", "config.yaml.tmp"}


def unexpected_contents(path: Path) -> list[str]:
    """What ``path`` holds besides the little a start killed before its config.yaml leaves
    (sorted names; ``[]`` when it does not exist or is free to start a run in)."""
    if not path.is_dir():
        return []
    found = []
    for child in path.iterdir():
        leftover = child.name in _LEFT_BEFORE_CONFIG and (not child.is_dir() or not any(child.iterdir()))
        if not leftover:
            found.append(child.name + ("/" if child.is_dir() else ""))
    return sorted(found)


def claim_run_dir(path: Path) -> RunPaths:
    """Create the fixed run directory ``path`` (``run.dir``), or take it when it is free: missing,
    empty, or holding only what a start killed before its config.yaml left. FileExistsError
    saying what is in the way otherwise ("it is a file", "it holds data/, notes.txt")."""
    if path.exists() and not path.is_dir():
        raise FileExistsError("it is a file")
    unexpected = unexpected_contents(path)
    if unexpected:
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise FileExistsError(f"it holds {', '.join(unexpected[:5])}{more}")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml.tmp").unlink(missing_ok=True)
    paths = RunPaths(path)
    paths.logs.mkdir(exist_ok=True)
    paths.models.mkdir(exist_ok=True)
    return paths
