"""``kiln export`` from the command line, and logging exports to the run's MLflow run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.export import ExportOptions, export_run
from tests.conftest import run_cli


@pytest.mark.slow
def test_cli_exit_1_on_missed_tolerance_and_no_usable_file(run_dir: Path) -> None:
    result = run_cli("export", str(run_dir), "--format", "onnx", "--quantize", "int8",
                     "--int8-atol", "0", "--int8-rtol", "0", "--no-mlflow")
    assert result.returncode == 1, result.stderr
    assert "onnx_int8: outputs differ by up to" in result.stderr and "exceeding" in result.stderr
    assert "Traceback" not in result.stderr
    assert "FAIL" in result.stdout and "PASS" in result.stdout  # the table: int8 failed, fp32 passed
    models = run_dir / "models"
    assert not (models / "model.int8.onnx").exists()
    assert (models / "model.int8.onnx.failed").is_file() and (models / "model.onnx").is_file()
    record = json.loads((models / "exports.json").read_text())["exports"]["onnx_int8"]
    assert record["passed"] is False and record["file"] == "model.int8.onnx.failed"


def test_cli_passes_with_exit_0(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run_dir), "--format", "torch_export", "--no-mlflow",
                 "--samples", "32", "--batch-sizes", "1,5"]) == 0
    out = capsys.readouterr().out
    assert "torch_export" in out and "PASS" in out and "exports.json" in out
    parity = json.loads((run_dir / "models" / "exports.json").read_text())["exports"]["torch_export"]["parity"]
    assert parity["batch_sizes"] == [1, 5] and parity["samples"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onx"], "Did you mean 'onnx'"),
        (["--format", "torch_export", "--quantize", "int8"], "add onnx to --format"),
        (["--batch-sizes", "1,x"], "comma-separated integers"),
    ],
)
def test_cli_usage_errors_exit_2(trained_run: Path, capsys: pytest.CaptureFixture[str],
                                 args: list[str], message: str) -> None:
    assert main(["export", str(trained_run), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_exports_are_logged_to_the_runs_mlflow_run(run_dir: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{run_dir.parent / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``noload`` loader strategy", category=DeprecationWarning)
        client = MlflowClient(uri)
        experiment = client.create_experiment("exports", artifact_location=str(run_dir.parent / "artifacts"))
        run_id = client.create_run(experiment).info.run_id
        (run_dir / "logs" / "mlflow.json").write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}))
        report = export_run(run_dir, ExportOptions(formats=("torch_export",), samples=16))
        logged = sorted(a.path for a in client.list_artifacts(run_id, "exports"))
    assert report.passed and report.mlflow == f"logged 3 files to MLflow run {run_id}"
    assert logged == ["exports/MODEL_CARD.md", "exports/exports.json", "exports/model.pt2"]


def test_mlflow_failure_is_a_warning_not_a_failed_export(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    link = {"tracking_uri": "nosuchscheme://nowhere", "run_id": "0123"}
    (run_dir / "logs" / "mlflow.json").write_text(json.dumps(link))
    report = export_run(run_dir, ExportOptions(formats=("torch_export",), samples=16))
    assert report.passed and report.mlflow is not None and report.mlflow.startswith("failed:")
    assert "exports not logged to MLflow" in caplog.text
    assert (run_dir / "models" / "model.pt2").is_file()
