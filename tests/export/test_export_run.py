"""Exports of a real tiny run: every format reloads from its file and reproduces the eager model,
the records and model card say so, and a failed export leaves nothing usable behind."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from kiln.errors import UsageError
from kiln.export import FILES, ExportOptions, Tolerance, export_run
from kiln.models.package import load_package

ALL = ExportOptions(formats=("onnx", "torch_export", "torchscript"), quantize="int8", mlflow=False)
# The shared run trains for two epochs, so many of its class margins are thin. Where the CPU lacks
# VNNI, ONNX Runtime's int8 kernels flip a few of them: 97.7% agreement on an AVX2-only AMD EPYC,
# while the trained digits demo agrees on 100% there. This test holds the tiny model to 95%; the
# default of 99% is checked as recorded below.
TINY_INT8 = Tolerance(min_agreement=0.95)


def eager_outputs(run_dir: Path, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = load_package(run_dir).model(torch.from_numpy(x)).numpy()
    return out


def test_every_format_reloads_and_reproduces_eager_outputs(run_dir: Path) -> None:
    report = export_run(run_dir, replace(ALL, int8_tolerance=TINY_INT8))
    assert report.passed, report.failures()
    models = run_dir / "models"
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    expected = eager_outputs(run_dir, x)

    onnx.checker.check_model(str(models / FILES["onnx"]))
    session = ort.InferenceSession(str(models / FILES["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # a dynamic batch axis
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-3, atol=1e-5)

    program = torch.export.load(str(models / FILES["torch_export"])).module()
    np.testing.assert_allclose(program(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-3, atol=1e-5)

    with warnings.catch_warnings():  # torch deprecates torch.jit; TorchScript is the legacy format
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        scripted = torch.jit.load(str(models / FILES["torchscript"]))
    np.testing.assert_allclose(scripted(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-3, atol=1e-5)

    int8 = ort.InferenceSession(str(models / FILES["onnx_int8"]), providers=["CPUExecutionProvider"])
    assert int8.run(None, {"input": x})[0].shape == expected.shape
    assert report.records["onnx_int8"]["parity"]["agreement"] >= TINY_INT8.min_agreement


def test_exports_json_records_parity_tolerances_and_versions(run_dir: Path) -> None:
    export_run(run_dir, ALL)
    data = json.loads((run_dir / "models" / "exports.json").read_text())
    assert set(data["exports"]) == {"onnx", "onnx_int8", "torch_export", "torchscript"}
    onnx_rec = data["exports"]["onnx"]
    assert onnx_rec["passed"] is True and onnx_rec["file"] == "model.onnx"
    assert onnx_rec["size_bytes"] == (run_dir / "models" / "model.onnx").stat().st_size
    assert isinstance(onnx_rec["opset"], int) and onnx_rec["versions"]["onnxruntime"] == ort.__version__
    assert onnx_rec["versions"]["torch"] == torch.__version__
    parity = onnx_rec["parity"]
    assert parity["batch_sizes"] == [1, 7, 32] and parity["inputs"].startswith("test split")
    assert parity["tolerance"] == {"rtol": 1e-3, "atol": 1e-5, "min_agreement": None}
    assert parity["max_abs_diff"] <= 1e-3 and parity["agreement"] == 1.0
    assert data["exports"]["onnx_int8"]["parity"]["tolerance"]["min_agreement"] == 0.99
    assert data["exports"]["onnx_int8"]["precision"] == "int8"
    assert data["exports"]["torchscript"]["legacy"] is True
    cpu = data["exports"]["onnx_int8"]["cpu"]
    assert cpu["model"] and cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"Measured on: {cpu['model']} (torch kernels {cpu['torch_capability']}" in (
        run_dir / "models" / "MODEL_CARD.md").read_text()
    assert all("export_seconds" in r and "exported_at" in r and len(r["sha256"]) == 64
               for r in data["exports"].values())


def test_model_card_describes_model_metrics_and_exports(run_dir: Path) -> None:
    export_run(run_dir, ExportOptions(formats=("onnx",), mlflow=False))
    card = (run_dir / "models" / "MODEL_CARD.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    for heading in ("## Model", "## Data", "## Metrics", "## Exports"):
        assert heading in card
    assert "`mlp`" in card and "hidden=[16]" in card and "Dataset: `digits`" in card
    assert f"| test_accuracy | {summary['test']['test_accuracy']:.4g} |" in card
    assert "| onnx | `model.onnx` |" in card and "passed" in card
    assert 'onnxruntime.InferenceSession("model.onnx")' in card


def test_reexport_replaces_its_records_and_keeps_the_others(run_dir: Path) -> None:
    export_run(run_dir, ExportOptions(formats=("onnx", "torch_export"), mlflow=False))
    first = json.loads((run_dir / "models" / "exports.json").read_text())["exports"]
    export_run(run_dir, ExportOptions(formats=("torch_export",), mlflow=False))
    second = json.loads((run_dir / "models" / "exports.json").read_text())["exports"]
    assert second["onnx"] == first["onnx"]
    assert second["torch_export"]["exported_at"] >= first["torch_export"]["exported_at"]


def test_failed_tolerance_leaves_only_a_failed_file(run_dir: Path) -> None:
    report = export_run(run_dir, ExportOptions(
        formats=("onnx",), quantize="int8", int8_tolerance=Tolerance(rtol=0, atol=0), mlflow=False))
    models = run_dir / "models"
    assert not report.passed and report.records["onnx"]["passed"]
    assert not (models / "model.int8.onnx").exists() and (models / "model.int8.onnx.failed").is_file()
    (failure,) = report.failures()
    assert failure.startswith("onnx_int8: outputs differ by up to") and "kept as model.int8.onnx.failed" in failure
    # a later passing export replaces the .failed file
    assert export_run(run_dir, ExportOptions(formats=("onnx",), quantize="int8", int8_tolerance=TINY_INT8, mlflow=False)).passed
    assert (models / "model.int8.onnx").is_file() and not (models / "model.int8.onnx.failed").exists()


def test_random_inputs_when_the_data_cannot_be_rebuilt(run_dir: Path) -> None:
    (run_dir / "config.yaml").unlink()
    report = export_run(run_dir, ExportOptions(formats=("torch_export",), samples=16, mlflow=False))
    inputs = report.records["torch_export"]["parity"]["inputs"]
    assert report.passed and inputs.startswith("random normal inputs of shape [1, 8, 8]")
    assert "could not be rebuilt" in inputs


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ExportOptions(formats=("onx",)), "Did you mean 'onnx'"),
        (ExportOptions(formats=("torch_export",), quantize="int8"), "add onnx to --format"),
        (ExportOptions(formats=("onnx",), quantize="int4"), "unknown quantization"),
    ],
)
def test_usage_errors(trained_run: Path, options: ExportOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        export_run(trained_run, options)
