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

from kiln.config import load_config
from kiln.errors import UsageError
from kiln.export import ExportOptions, Tolerance, export_run
from kiln.export.catalog import every_format
from kiln.models.package import load_package
from kiln.train import Trainer
from tests.conftest import ROOT

FILES = {fmt.name: fmt.file for fmt in every_format()}  # what each format writes into models/
ALL = ExportOptions(formats=("onnx", "torch_export", "torchscript"), quantize="int8", mlflow=False)
# The shared run trains for two epochs, so many of its class margins are thin. Where the CPU lacks
# VNNI, ONNX Runtime's int8 kernels flip a few of them: 97.7% agreement on an AVX2-only AMD EPYC,
# while the trained digits demo agrees on 100% there. This test holds the tiny model to 95%; the
# default of 99% is held on the trained demo (test_int8_meets_the_default_agreement_on_a_trained_model).
TINY_INT8 = Tolerance(min_agreement=0.95)
# What the code achieves, with a small margin. ONNX Runtime's fp32 kernels sum in another order than
# torch's: measured 2.9e-6 on the shared run's test split (logits up to ~10), 2.4e-7 on the unit
# normal inputs below (logits up to ~2), on AMD EPYC with and without AVX-512. torch.export and
# TorchScript run torch's own kernels at the same batch size as the eager model: bit-identical.
ONNX_FP32_MAX_ABS = 1e-5
ONNX_FP32_RANDOM_ATOL = 2e-6
# Dynamic quantization leaves 8 of 32 bits per weight; the graph around them (names, shapes, the
# quantize/dequantize nodes) weighs the same, so the tiny model's int8 file is 0.58 of its fp32 one.
INT8_MAX_SIZE_RATIO = 0.75


def eager_outputs(run_dir: Path, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = load_package(run_dir).model(torch.from_numpy(x)).numpy()
    return out


def weight_shapes(run_dir: Path) -> list[tuple[int, ...]]:
    """The shapes of the eager model's Linear weights as a MatMul takes them (in x out)."""
    model = load_package(run_dir).model
    return sorted(tuple(m.weight.T.shape) for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_every_format_reloads_and_reproduces_eager_outputs(run_dir: Path) -> None:
    report = export_run(run_dir, replace(ALL, int8_tolerance=TINY_INT8))
    assert report.passed, report.failures()
    models = run_dir / "models"
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    expected = eager_outputs(run_dir, x)

    onnx.checker.check_model(str(models / FILES["onnx"]))
    session = ort.InferenceSession(str(models / FILES["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # a dynamic batch axis
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=0, atol=ONNX_FP32_RANDOM_ATOL)
    assert report.records["onnx"]["parity"]["max_abs_diff"] <= ONNX_FP32_MAX_ABS

    program = torch.export.load(str(models / FILES["torch_export"])).module()
    np.testing.assert_array_equal(program(torch.from_numpy(x)).detach().numpy(), expected)

    with warnings.catch_warnings():  # torch deprecates torch.jit; TorchScript is the legacy format
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        scripted = torch.jit.load(str(models / FILES["torchscript"]))
    np.testing.assert_array_equal(scripted(torch.from_numpy(x)).detach().numpy(), expected)
    for fmt in ("torch_export", "torchscript"):  # on the held-out inputs at every batch size too
        assert report.records[fmt]["parity"]["max_abs_diff"] == 0.0, fmt

    int8 = ort.InferenceSession(str(models / FILES["onnx_int8"]), providers=["CPUExecutionProvider"])
    assert int8.run(None, {"input": x})[0].shape == expected.shape
    assert report.records["onnx_int8"]["parity"]["agreement"] >= TINY_INT8.min_agreement


def test_int8_export_is_quantized_not_a_copy_of_the_fp32_model(run_dir: Path) -> None:
    report = export_run(run_dir, ExportOptions(formats=("onnx",), quantize="int8", int8_tolerance=TINY_INT8, mlflow=False))
    assert report.passed, report.failures()
    models = run_dir / "models"
    graph = onnx.load(str(models / FILES["onnx_int8"])).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and not ops & {"Gemm", "MatMul"}, ops
    int8 = sorted(tuple(i.dims) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and i.dims)
    assert int8 == weight_shapes(run_dir)  # every Linear weight stored as int8 (beside scalar zero points)
    assert (models / FILES["onnx_int8"]).stat().st_size < INT8_MAX_SIZE_RATIO * (models / FILES["onnx"]).stat().st_size
    record = report.records["onnx_int8"]
    assert record["precision"] == "int8" and record["size_bytes"] == (models / FILES["onnx_int8"]).stat().st_size
    # int8 weights cannot reproduce fp32 logits: measured 0.07-0.09 here, where fp32 gives 3e-6
    assert record["parity"]["max_abs_diff"] > 100 * ONNX_FP32_MAX_ABS


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped digits demo (configs/digits_mlp.yaml) trained as the README trains it, about 5 s
    on one core: a trained model, where the shared run is a barely trained one."""
    config = load_config(ROOT / "configs" / "digits_mlp.yaml", [
        f"run.output_dir={tmp_path_factory.mktemp('demo-runs')}", "run.progress=false",
        "checkpoint.enabled=false", "tracking.backends=['jsonl']",
    ])
    result = Trainer(config, quiet=True).fit()
    assert result.summary.test["test_accuracy"] >= 0.95, result.summary.test
    return result.run_dir


def test_int8_meets_the_default_agreement_on_a_trained_model(demo_run: Path) -> None:
    """The README's promise: int8 agrees with fp32 on at least 99% of predicted classes of a trained model."""
    report = export_run(demo_run, ExportOptions(formats=("onnx",), quantize="int8", mlflow=False))
    record = report.records["onnx_int8"]
    assert record["parity"]["tolerance"] == {"rtol": None, "atol": None, "min_agreement": 0.99}
    assert record["passed"] and record["file"] == FILES["onnx_int8"], report.failures()
    assert record["parity"]["agreement"] >= 0.99 and record["parity"]["misses"] == []
    assert [b["agreement"] >= 0.99 for b in record["parity"]["per_batch_size"]] == [True, True, True]
    assert (demo_run / "models" / FILES["onnx_int8"]).is_file()


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
    assert parity["max_abs_diff"] <= ONNX_FP32_MAX_ABS and parity["agreement"] == 1.0
    for fmt in ("onnx", "torch_export", "torchscript"):
        rec = data["exports"][fmt]
        assert rec["passed"] is True and rec["parity"]["passed"] is True and rec["parity"]["misses"] == [], fmt
        assert rec["file"] == FILES[fmt] and rec["error"] is None, fmt
    assert data["exports"]["torch_export"]["parity"]["max_abs_diff"] == 0.0
    assert data["exports"]["torchscript"]["parity"]["max_abs_diff"] == 0.0
    int8 = data["exports"]["onnx_int8"]
    assert int8["parity"]["tolerance"] == {"rtol": None, "atol": None, "min_agreement": 0.99}
    assert int8["precision"] == "int8"
    # The tiny model's int8 agreement depends on the CPU (see TINY_INT8): whichever it is, the
    # verdict, the file name and the misses must follow it.
    agreement = int8["parity"]["agreement"]
    passed = agreement >= 0.99
    assert int8["passed"] is passed and int8["parity"]["passed"] is passed
    assert int8["file"] == (FILES["onnx_int8"] if passed else FILES["onnx_int8"] + ".failed")
    assert (run_dir / "models" / int8["file"]).is_file()
    assert int8["parity"]["misses"] == ([] if passed else [
        f"predicted classes agree on {agreement:.2%} of samples, below the required 99.00% "
        f"(short by {0.99 - agreement:.2%})"])
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
