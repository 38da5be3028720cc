"""Helpers for sweep tests: a tiny base config, sweep files, the study, and a PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln.sweep.study import with_driver
from kiln.testing.tiny import TINY_OVERRIDES
from tests.conftest import ROOT
from tests.postgres import fresh_database

FAST_HEARTBEAT = {"interval": 1, "grace_period": 3}


def base_overrides(output_dir: Path, *extra: str) -> list[str]:
    """The tiny config (digits, a 16-unit MLP, 2 epochs) writing under ``output_dir``."""
    return [*TINY_OVERRIDES, f"run.output_dir={output_dir}", "tracking.backends=[jsonl]",
            "tracking.system_metrics=false", *extra]


def write_sweep(path: Path, **fields: Any) -> Path:
    """A sweep file: a 2x2 grid on lr and dropout unless ``fields`` say otherwise."""
    spec: dict[str, Any] = {
        "method": "grid", "metric": "val_accuracy", "direction": "maximize",
        "parameters": {"training.lr": {"choice": [0.001, 0.01]}, "model.dropout": {"choice": [0.0, 0.2]}},
        "heartbeat": FAST_HEARTBEAT,
    }
    spec.update(fields)
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def trials_of(storage: str, study_name: str) -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=study_name, storage=with_driver(storage)).get_trials()


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln", "sweep", *args]


@contextlib.contextmanager
def started_sweep(*args: str, cwd: Path = ROOT) -> Iterator[subprocess.Popen[str]]:
    """``kiln sweep ARGS`` in a real process; stopped (SIGTERM, passed on to its workers) if the
    test leaves it running."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(sweep_command(*args), cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120,
             process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the sweep ended ({process.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def runs_with_checkpoint(trials_dir: Path) -> list[Path]:
    """Trial run directories holding at least one committed checkpoint."""
    return sorted({p.parent.parent for p in trials_dir.glob("*/checkpoints/epoch*") if not p.name.endswith(".tmp")})


def grid_points(trials: list[Any]) -> list[tuple[Any, ...]]:
    """The (sorted) parameter values of the completed trials."""
    from optuna.trial import TrialState

    return sorted(tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test's own (its URL), dropped afterwards."""
    with fresh_database("kiln_sweep") as url:
        yield url


@pytest.fixture
def pg_study() -> str:
    """A study name of its own (the database it lives in is dropped afterwards)."""
    return f"kiln-test-{uuid.uuid4().hex[:12]}"
