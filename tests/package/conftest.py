"""A digits run with a verified ONNX export, and its build context written once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kiln.package import PackageResult, package_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def onnx_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny digits run, copied, with a passing ONNX export."""
    from kiln.export.run import ExportOptions, export_run

    copy = tmp_path_factory.mktemp("package-run") / trained_run.name
    shutil.copytree(trained_run, copy)
    assert export_run(copy, ExportOptions(formats=("onnx",), mlflow=False)).passed
    # a known commit: the test checkout may be no git repository (its record is then empty)
    environment = json.loads((copy / "environment.json").read_text())
    environment["git"] = {"commit": COMMIT, "dirty": False}
    (copy / "environment.json").write_text(json.dumps(environment))
    return copy


@pytest.fixture(scope="session")
def context(onnx_run: Path, tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    return package_model(onnx_run, tmp_path_factory.mktemp("package") / "image")
