"""Helpers for distributed tests: the CLI in a real process, and where each rank wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kiln.testing.tiny import TINY_OVERRIDES
from tests.conftest import ROOT

WRITES_HOOK = Path(__file__).parent / "writes"


def overrides(output_dir: Path, *extra: str) -> list[str]:
    """The tiny digits MLP config writing under ``output_dir`` (jsonl + csv, no system sampler)."""
    return [*TINY_OVERRIDES, f"run.output_dir={output_dir}", "tracking.backends=[jsonl,csv]",
            "tracking.system_metrics=false", *extra]


def env_for(output_dir: Path | None = None, writes_dir: Path | None = None) -> dict[str, str]:
    """The environment of a launched job; with ``writes_dir`` every rank records its writes."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    if writes_dir is not None and output_dir is not None:
        writes_dir.mkdir(parents=True, exist_ok=True)
        env.update({"PYTHONPATH": os.pathsep.join([str(WRITES_HOOK), env.get("PYTHONPATH", "")]),
                    "KILN_WATCH_DIR": str(output_dir), "KILN_WRITES_DIR": str(writes_dir)})
    return env


def kiln(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln", *args], cwd=ROOT, env=env or env_for(),
        capture_output=True, text=True, timeout=timeout,
    )


def writes_by_rank(writes_dir: Path) -> dict[str, list[str]]:
    """``{"0": [...], "1": [...]}``: what each rank's processes wrote under the watched dir."""
    found: dict[str, list[str]] = {}
    for log in sorted(writes_dir.glob("rank*-*.txt")):
        rank = log.name[len("rank"):].split("-")[0]
        found.setdefault(rank, []).extend(log.read_text(encoding="utf-8").splitlines())
    return found
