"""An example third-party export format, the whole of it: ONNX Runtime's offline graph
optimizations (fused nodes, folded constants) saved as ``model.ort.onnx``, which loads and runs
faster than the plain ONNX export. It converts the ``onnx`` format's file, so it names that as
its ``source``, and it is fp32, so the fp32 tolerance holds it.

Registered by ``EXPORT_FORMATS.register("onnx_ort", "tests.plugins.example_format:OrtOptimizedFormat", ...)``,
it is exported by ``kiln export RUN --format onnx,onnx_ort``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiln.errors import ExportError, exception_line
from kiln.export.format import ExportJob, Precision
from kiln.export.onnx import OnnxFormat, onnx_runner
from kiln.export.parity import Runner


class OrtOptimizedFormat:
    name = "onnx_ort"
    file = "model.ort.onnx"
    precision: Precision = "fp32"
    legacy = False
    source = OnnxFormat.name  # exported first; this format optimizes its file
    packages = ("onnxruntime",)
    loading = 'onnxruntime.InferenceSession("{file}").run(None, {{"input": x}})'

    def export(self, job: ExportJob, path: Path) -> None:
        import onnxruntime as ort

        source = job.exported(OnnxFormat.file)
        if source is None:
            raise ExportError("the ORT-optimized model needs the ONNX export, which failed")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(path)  # creating the session writes the file
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types
            raise ExportError(f"ONNX Runtime could not optimize {source.name}: {exception_line(exc)}") from exc

    def load(self, path: Path) -> Runner:
        return onnx_runner(path)

    def describe(self, path: Path) -> dict[str, Any]:
        return {}
