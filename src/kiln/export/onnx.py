"""ONNX export through the dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``).

The batch axis is dynamic (named ``batch``), the input is called ``input`` and the output
``output``, so a server needs nothing but the file. The model is checked with ``onnx.checker``
and run with ONNX Runtime for the parity check, the way it will be served.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kiln.errors import ExportError, exception_line, require_extra
from kiln.export.format import ExportJob, Precision
from kiln.export.parity import Array, Runner

INPUT_NAME = "input"
OUTPUT_NAME = "output"
PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript")  # what made and runs an ONNX export
LOADING = 'onnxruntime.InferenceSession("{file}").run(None, {{"input": x}})'


class OnnxFormat:
    """``model.onnx``, run with ONNX Runtime: the default format of ``kiln serve``."""

    name = "onnx"
    file = "model.onnx"
    precision: Precision = "fp32"
    legacy = False
    source = None
    packages = PACKAGES
    loading = LOADING

    def export(self, job: ExportJob, path: Path) -> None:
        export_onnx(job.model, job.example, path, job.opset)

    def load(self, path: Path) -> Runner:
        return onnx_runner(path)

    def describe(self, path: Path) -> dict[str, Any]:
        return {"opset": onnx_opset(path)}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence what the exporter says that a user can do nothing about.

    - torch's exporter logs one warning per torchvision operator when torchvision is absent;
    - torch 2.13's ONNX decomposition deep-copies pytree specs, which trips torch's own
      ``isinstance(treespec, LeafSpec)`` FutureWarning (under ``-W error`` it aborts the export).
    Only that one warning is filtered; anything else still surfaces.
    """
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                category=FutureWarning,
            )
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> None:
    """Write ``model`` as ONNX to ``path`` (one self-contained file) and check it."""
    require_extra("onnxscript", "export")
    onnx = require_extra("onnx", "export")
    try:
        with quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=(dynamic_axes(example),), opset_version=opset, external_data=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean the same to a user
        raise ExportError(f"ONNX export failed: {exception_line(exc)}") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model is invalid: {exception_line(exc)}") from exc


def dynamic_axes(example: torch.Tensor) -> dict[int, Any]:
    """The batch axis is always dynamic; so is the sequence axis of token ids ``[batch, seq]``
    (any length up to the example's, which is the model's context)."""
    axes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if example.ndim == 2 and not example.is_floating_point():
        axes[1] = torch.export.Dim("seq", min=1, max=example.shape[1])
    return axes


def onnx_opset(path: Path) -> int | None:
    """The default-domain opset the file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def onnx_runner(path: Path) -> Runner:
    """Run the ONNX file with ONNX Runtime on the CPU."""
    ort = require_extra("onnxruntime", "export")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's info lines are noise in a CLI
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(inputs: Array) -> Array:
        (outputs, *_) = session.run(None, {name: inputs})
        return np.asarray(outputs, dtype=np.float32)

    return run
