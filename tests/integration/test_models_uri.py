"""``models:/NAME@ALIAS`` in ``kiln export``, ``kiln gate`` and ``kiln report`` (``kiln generate``:
tests/lm/test_generate.py), driven through the CLI against a real SQLite MLflow registry.

Two runs are registered under one name: version 1 is the shared tiny run and holds the alias,
version 2 (the latest) is a smaller model without it. Each command must act on version 1: write
into its run directory, measure its numbers, log to its MLflow run, and leave version 2 alone.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from mlflow import MlflowClient

import kiln
from kiln.cli.main import main
from kiln.registry import register_run
from kiln.testing import tiny_config
from kiln.tracking.sync import sync_run
from kiln.train import Trainer

# SQLAlchemy 2.x deprecates a loader option MLflow's SQL store still uses (see tests/registry).
NOLOAD = "The ``noload`` loader strategy is deprecated"
pytestmark = pytest.mark.filterwarnings(f"ignore:{NOLOAD}:DeprecationWarning")

NAME = "uri-digits"
URI = f"models:/{NAME}@production"


@dataclass(frozen=True)
class Registry:
    uri: str
    aliased: Path  # version 1, @production
    latest: Path  # version 2, no alias


def parameters(run_dir: Path) -> int:
    return sum(p.numel() for p in kiln.load_model(run_dir).parameters())


@pytest.fixture(scope="module")
def registry(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("models-uri")
    aliased = root / "runs" / trained_run.name
    shutil.copytree(trained_run, aliased)
    latest = Trainer(tiny_config(root / "runs", "run.name=latest", "model.hidden=[8]", "training.epochs=1",
                                 "checkpoint.enabled=false"), quiet=True).fit().run_dir
    uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOLOAD, category=DeprecationWarning)
        for run_dir in (aliased, latest):  # kiln sync: the run and its model into the store
            assert sync_run(run_dir, uri).model_logged
        first = register_run(aliased, NAME, alias="production", uri=uri)
        second = register_run(latest, NAME, uri=uri)
    assert (first.version, first.alias_set, second.version, second.alias) == (1, True, 2, None)
    assert parameters(aliased) != parameters(latest)
    return Registry(uri, aliased, latest)


@pytest.fixture
def store(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    return registry


def mlflow_run_id(run_dir: Path) -> str:
    return str(json.loads((run_dir / "logs" / "mlflow.json").read_text())["run_id"])


def test_export_by_alias_exports_the_aliased_version(store: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", URI, "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    models = store.aliased / "models"
    assert f"exports of {store.aliased.name}" in out and str(models / "exports.json") in out
    assert not (store.latest / "models" / "model.onnx").exists()
    # the file is version 1's model: its logits, not version 2's
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(models / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        eager = kiln.load_model(store.aliased)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], eager, rtol=0, atol=1e-5)
    assert json.loads((models / "exports.json").read_text())["exports"]["onnx"]["passed"] is True
    # and its copy went to version 1's MLflow run
    client = MlflowClient(store.uri)
    assert f"mlflow: logged 3 files to MLflow run {mlflow_run_id(store.aliased)}" in out
    assert "exports/model.onnx" in {a.path for a in client.list_artifacts(mlflow_run_id(store.aliased), "exports")}
    assert client.list_artifacts(mlflow_run_id(store.latest), "exports") == []


def test_gate_by_alias_measures_the_aliased_version(store: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    count = parameters(store.aliased)
    code = main(["gate", URI, "--require", f"parameters>={count}", "--require", "test_accuracy>=0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    accuracy = json.loads((store.aliased / "summary.json").read_text())["test"]["test_accuracy"]
    assert f"{accuracy:.4f}" in out and "all 2 criteria passed" in out
    assert json.loads((store.aliased / "eval" / "cost.json").read_text())["metrics"]["parameters"] == count
    assert not (store.latest / "eval").exists()
    # the latest version is the smaller model: gating it by number fails the same criterion
    assert main(["gate", f"models:/{NAME}/2", "--require", f"parameters>={count}"]) == 1
    capsys.readouterr()


def test_report_by_alias_reports_the_aliased_version(store: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", URI]) == 0
    path = store.aliased / "report.html"
    assert capsys.readouterr().out.strip() == f"written: {path}"
    page = path.read_text()
    assert f"<h1>Run report: {store.aliased.name}</h1>" in page
    assert f'<tr><td>parameters</td><td class="num">{parameters(store.aliased)}</td></tr>' in page
    assert not (store.latest / "report.html").exists()
