"""One tiny trained run (digits, one-layer MLP) shared by the eval and gate tests; each test that writes
into a run gets its own copy, so the tests do not depend on each other's order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kiln.testing import tiny_config
from kiln.train import Trainer


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("eval-runs")
    result = Trainer(tiny_config(output, "checkpoint.enabled=false", backends=("jsonl", "csv")), quiet=True).fit()
    return result.run_dir


@pytest.fixture
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy
