"""The language model exports to ONNX with dynamic batch and sequence axes, matching eager logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln
from kiln.export import ExportOptions, export_run
from kiln.export.onnx import onnx_runner


@pytest.mark.slow
def test_onnx_export_passes_parity_on_held_out_token_windows(trained: Path) -> None:
    report = export_run(trained, ExportOptions(formats=("onnx",), mlflow=False))
    assert report.passed, report.failures()
    record = report.records["onnx"]
    assert record["parity"]["inputs"].startswith("test split")
    assert record["parity"]["max_abs_diff"] < 1e-4
    assert record["parity"]["agreement"] == 1.0  # the same next token at every position
    assert json.loads((trained / "models/exports.json").read_text())["exports"]["onnx"]["passed"]


def test_onnx_sequence_axis_is_dynamic(trained: Path) -> None:
    """Shorter sequences and other batch sizes than the export example give the eager logits."""
    path = trained / "models/model.onnx"
    if not path.exists():
        export_run(trained, ExportOptions(formats=("onnx",), mlflow=False))
    run = onnx_runner(path)
    model = kiln.load_model(trained)
    rng = np.random.default_rng(0)
    vocab = len(json.loads((trained / "models/model.json").read_text())["class_names"])
    for batch, seq in ((1, 1), (3, 5), (5, 16)):
        ids = rng.integers(0, vocab, (batch, seq), dtype=np.int64)
        with torch.no_grad():
            eager = model(torch.from_numpy(ids)).numpy()
        exported = run(ids)
        assert exported.shape == (batch, seq, eager.shape[-1])
        np.testing.assert_allclose(exported, eager, rtol=1e-3, atol=1e-5)
