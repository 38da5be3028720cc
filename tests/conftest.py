"""Shared fixtures: a clean environment for subprocesses, a helper to run the CLI, one tiny
trained run shared by the eval, gate and export tests, and ``require_tool``: the one way a test
skips for something missing from the machine, which CI turns into a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MISSING_TOOL = "missing tool: "


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(available: bool, what: str) -> None:
    """Skip the test unless ``available``: ``what`` names the missing server, program or privilege
    and how to get it. Under CI=true the skip is a failure (``pytest_runtest_makereport`` below):
    .ci/run provides all of them, so a skip there could only hide a broken promise."""
    if not available:
        pytest.skip(MISSING_TOOL + what)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if in_ci() and report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if reason.startswith(MISSING_TOOL):
            report.outcome = "failed"
            report.longrepr = (f"{reason}\nCI=true: no test may skip for a missing tool; .ci/run "
                               "installs and starts everything the suite needs")
    return report


@pytest.fixture(scope="session")
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-state")


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, _state_home: Path, _cache_home: Path) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    # kiln serve keeps a models:/ URI's prediction log under $XDG_STATE_HOME: never the tester's home
    monkeypatch.setenv("XDG_STATE_HOME", str(_state_home))
    # image scans keep their verdicts (and disk caches their pixels) under $XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))


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
