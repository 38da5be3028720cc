"""Adding an export format: one module (tests/plugins/example_format.py) and one registration.

Once registered, ``kiln export --format`` takes its name, the export is checked and recorded like
a built-in one, and kiln's contract suite checks it, as a user checks their own format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.export import EXPORT_FORMATS, ExportFormat, ExportOptions, export_run
from kiln.testing import ExporterContract
from tests.plugins.example_format import OrtOptimizedFormat


@pytest.fixture
def onnx_ort() -> Iterator[str]:
    """The registration (a user's package does this once, in the module that sets kiln up)."""
    EXPORT_FORMATS.register("onnx_ort", "tests.plugins.example_format:OrtOptimizedFormat",
                            "ONNX Runtime's offline-optimized graph (needs onnx)")
    yield "onnx_ort"
    EXPORT_FORMATS.unregister("onnx_ort")


def test_a_registered_format_is_exported_checked_and_recorded(onnx_ort: str, run_dir: Path) -> None:
    report = export_run(run_dir, ExportOptions(formats=("onnx", onnx_ort), mlflow=False))
    assert report.passed, report.failures()
    assert list(report.records) == ["onnx", "onnx_ort"]  # the source first
    models = run_dir / "models"
    record = json.loads((models / "exports.json").read_text())["exports"]["onnx_ort"]
    assert record["file"] == "model.ort.onnx" and (models / "model.ort.onnx").is_file()
    assert record["parity"]["tolerance"] == {"rtol": 1e-3, "atol": 1e-5, "min_agreement": None}
    assert record["versions"].keys() == {"onnxruntime"}
    card = (models / "MODEL_CARD.md").read_text()
    assert "| onnx_ort | `model.ort.onnx` |" in card
    assert 'onnxruntime.InferenceSession("model.ort.onnx").run(None, {"input": x})  # onnx_ort' in card


def test_the_cli_takes_its_name_and_says_what_it_needs(onnx_ort: str, trained_run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained_run), "--format", onnx_ort]) == 2
    assert "onnx_ort works on the onnx export: add onnx to --format" in capsys.readouterr().err


def test_until_registered_its_name_is_unknown(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained_run), "--format", "onnx_ort"]) == 2
    assert "unknown export format 'onnx_ort'" in capsys.readouterr().err


class TestOrtOptimizedFormat(ExporterContract):
    """The contract suite against the plugin itself: what a user writes for their own format."""

    @pytest.fixture(scope="class")
    @classmethod
    def export_format(cls) -> ExportFormat:
        return OrtOptimizedFormat()
