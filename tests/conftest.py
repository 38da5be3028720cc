"""Shared fixtures: a clean environment for subprocesses, a helper to run the CLI, and one tiny
trained run shared by the eval, gate and export tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kiln ARGS`` in a real subprocess and capture its output."""
    full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kiln", *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run (digits, one-layer MLP), trained once per session."""
    from kiln.testing import tiny_config
    from kiln.train import Trainer

    output = tmp_path_factory.mktemp("trained-runs")
    result = Trainer(tiny_config(output, "checkpoint.enabled=false", backends=("jsonl", "csv")), quiet=True).fit()
    return result.run_dir


@pytest.fixture
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared run for a test that writes into it, so tests do not depend on order."""
    copy = tmp_path / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy
