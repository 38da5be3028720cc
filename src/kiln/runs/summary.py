"""``summary.json``: the outcome of a run in one small file, and the listing of runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import KilnError


@dataclass(frozen=True)
class RunInfo:
    """One row of ``kiln runs``."""

    path: Path
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise KilnError(f"{run_dir} has no summary.json: is it a kiln run directory that finished?")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def list_runs(output_dir: Path) -> list[RunInfo]:
    """Runs under ``output_dir``, newest first; a run still going (no summary yet) shows as such."""
    if not output_dir.is_dir():
        return []
    runs = []
    for child in output_dir.iterdir():
        if not (child / "config.yaml").is_file():
            continue
        summary_path = child / "summary.json"
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {"status": "running or killed"}
        except json.JSONDecodeError:
            summary = {"status": "unreadable summary.json"}
        runs.append(RunInfo(child, summary))
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)
