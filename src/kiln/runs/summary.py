"""``summary.json``: the outcome of a run in one small file, and the listing of runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import PathError

RUN_MARKER = "config.yaml"  # written first into every run directory: what makes a directory a run
RUN_HINT = "pass a run directory (runs/<name>_<time>/); `kiln runs` lists them"


@dataclass(frozen=True)
class RunInfo:
    """One row of ``kiln runs``."""

    path: Path
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def require_run_dir(path: str | Path, markers: Sequence[str] = (RUN_MARKER,), up: int = 0) -> Path:
    """The run directory ``path`` names, or PathError saying why it is none: it does not exist, it
    is a file, or it holds none of ``markers``. With ``up`` > 0, a path that many levels inside a
    run (a checkpoint, ``checkpoints/``) names that run."""
    p = Path(path)
    if not p.exists():
        raise PathError(f"{p} is not a run directory: it does not exist", hint=RUN_HINT)
    if not p.is_dir():
        raise PathError(f"{p} is not a run directory: it is a file", hint=RUN_HINT)
    for candidate in (p, *p.parents[:up]):
        if any((candidate / marker).is_file() for marker in markers):
            return candidate
    inside = f" (nor has any of the {up} directories above it)" if up else ""
    raise PathError(f"{p} is not a run directory: it has no {' or '.join(markers)}{inside}", hint=RUN_HINT)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json; PathError when ``run_dir`` is no run, or a run that has not finished."""
    path = require_run_dir(run_dir) / "summary.json"
    if not path.is_file():
        raise PathError(
            f"{run_dir} has no summary.json: the run has not finished",
            hint=f"resume it with `kiln resume {run_dir}`, or pass a run that finished",
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def list_runs(output_dir: Path) -> list[RunInfo]:
    """Runs under ``output_dir``, newest first; a run still going (no summary yet) shows as such."""
    if not output_dir.is_dir():
        return []
    runs = []
    for child in output_dir.iterdir():
        if not (child / RUN_MARKER).is_file():
            continue
        summary_path = child / "summary.json"
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {"status": "running or killed"}
        except json.JSONDecodeError:
            summary = {"status": "unreadable summary.json"}
        runs.append(RunInfo(child, summary))
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)
