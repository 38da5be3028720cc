"""The ``onnx`` serve backend: ONNX Runtime on the CPU, running the run's ONNX export (created,
parity-checked and recorded by ``kiln export``'s code when the run has none)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kiln.errors import ServeError, exception_line, require_extra
from kiln.serve.backends import Predictor
from kiln.serve.backends.base import Array, to_probabilities

log = logging.getLogger("kiln.serve")


class OnnxBackend:
    name = "onnx"

    def prepare(self, package_dir: Path, export_file: Path | None) -> Path:
        """The ONNX file named on the command line, else the package's (created when missing)."""
        named = export_file if export_file is not None and export_file.suffix == ".onnx" else None
        return (named or _onnx_export(package_dir)).resolve()

    def load(self, path: Path, task: str, threads: int | None) -> Predictor:
        return OnnxPredictor(path, task, threads=1 if threads is None else threads)


class OnnxPredictor:
    """ONNX Runtime on the CPU, from an ONNX file written by ``kiln export``.

    ``threads`` is ORT's intra-op thread count. One is the default: a server's requests already
    run concurrently, and ORT's spinning worker threads otherwise compete with the event loop for
    the same cores (0 lets ORT choose).
    """

    name = "onnx"

    def __init__(self, path: Path, task: str, threads: int = 1) -> None:
        ort = require_extra("onnxruntime", "serve-onnx")  # serve-onnx: what a server needs; export has it too
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = path
        self._task = task
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for a missing, truncated or invalid file
            raise ServeError(
                f"ONNX Runtime cannot load {path}: {exception_line(exc)}. Export the run again with "
                "kiln export RUN --format onnx, or serve it with --backend torch"
            ) from exc
        self._input = self._session.get_inputs()[0].name

    def predict(self, batch: Array) -> Array:
        (outputs, *_) = self._session.run(None, {self._input: batch})
        return to_probabilities(np.asarray(outputs, dtype=np.float32), self._task)


def _onnx_export(package_dir: Path) -> Path:
    """The package's ONNX export, created with kiln's export code when there is none.

    An export whose record says it failed is returned as it is, not exported again behind the
    user's back: ``kiln.serve.verify`` then refuses it, naming the record and the fix."""
    from kiln.export.record import read_exports

    record = read_exports(package_dir).get("exports", {}).get("onnx")  # OnnxFormat.name
    if record and record.get("file") and (package_dir / str(record["file"])).is_file():
        return package_dir / str(record["file"])
    if record and not record.get("passed"):
        raise ServeError(
            f"the ONNX export of {package_dir} failed and left no file ({record.get('error')}); "
            f"export it again with kiln export {package_dir.parent} --format onnx, or serve the "
            "eager model with --backend torch"
        )
    # only now the exporter, which imports torch: serving an existing export does not need it
    from kiln.export.onnx import OnnxFormat
    from kiln.export.run import ExportOptions, export_run

    path = package_dir / OnnxFormat.file
    log.warning("%s has no ONNX export: creating one (kiln export --format onnx)", package_dir)
    report = export_run(package_dir, ExportOptions(formats=(OnnxFormat.name,), mlflow=False))
    if not report.passed:
        raise ServeError(
            "cannot serve with the onnx backend: the ONNX export failed ("
            + "; ".join(report.failures()) + "). Serve the eager model with --backend torch"
        )
    return path
