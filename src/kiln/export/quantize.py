"""int8 dynamic quantization of an ONNX model with ONNX Runtime.

Dynamic quantization stores weights as int8 and quantizes activations on the fly, so it needs no
calibration data; it suits the dense (MatMul/Gemm) layers that dominate kiln's models. The model
is first run through ORT's pre-processing (shape inference and graph optimization), as ORT
recommends, so quantization sees every tensor's shape.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from kiln.errors import ExportError, exception_line, require_extra
from kiln.export.format import ExportJob, Precision
from kiln.export.onnx import LOADING, PACKAGES, OnnxFormat, onnx_opset, onnx_runner
from kiln.export.parity import Runner


class OnnxInt8Format:
    """``model.int8.onnx``: the ONNX export with int8 weights (``kiln export --quantize int8``).
    Its outputs cannot match fp32 elementwise, so it is held to the int8 tolerance."""

    name = "onnx_int8"
    file = "model.int8.onnx"
    precision: Precision = "int8"
    legacy = False
    source = OnnxFormat.name
    packages = PACKAGES
    loading = LOADING

    def export(self, job: ExportJob, path: Path) -> None:
        fp32 = job.exported(OnnxFormat.file)
        if fp32 is None:
            raise ExportError("int8 quantization needs the fp32 ONNX export, which failed")
        quantize_int8(fp32, path)

    def load(self, path: Path) -> Runner:
        return onnx_runner(path)

    def describe(self, path: Path) -> dict[str, Any]:
        return {"opset": onnx_opset(path)}


def quantize_int8(source: Path, target: Path) -> None:
    """Write an int8 dynamically quantized copy of the ONNX model ``source`` to ``target``."""
    require_extra("onnxruntime", "export")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared))
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # ORT raises many types; all mean the same to a user
            raise ExportError(f"int8 quantization failed: {exception_line(exc)}") from exc
