"""What the server calls the model through: one small protocol, two implementations.

A backend takes a float32 batch already shaped and normalized for the model and returns
probabilities (softmax for classification, sigmoid for binary, the raw value for regression), so
the routes never care which runtime computed them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kiln.errors import ServeError, exception_line, require_extra

Array = npt.NDArray[np.float32]


class Backend(Protocol):
    """``predict(batch) -> probabilities``; must be safe to call from several threads."""

    name: str

    def predict(self, batch: Array) -> Array: ...


def to_probabilities(outputs: Array, task: str) -> Array:
    """Raw model outputs (logits) to what the API answers, per the task."""
    outputs = outputs.reshape(len(outputs), -1).astype(np.float32, copy=False)
    if task == "classification":
        shifted = outputs - outputs.max(axis=1, keepdims=True)  # no overflow for large logits
        exp = np.exp(shifted)
        probs: Array = exp / exp.sum(axis=1, keepdims=True)
        return probs
    if task == "binary":
        positive = 1.0 / (1.0 + np.exp(-outputs[:, :1]))
        return np.concatenate([1.0 - positive, positive], axis=1).astype(np.float32)
    return outputs


class OnnxBackend:
    """ONNX Runtime on the CPU, from an ONNX file written by ``kiln export``.

    ``threads`` is ORT's intra-op thread count. One is the default: a server's requests already
    run concurrently, and ORT's spinning worker threads otherwise compete with the event loop for
    the same cores (0 lets ORT choose).
    """

    name = "onnx"

    def __init__(self, path: Path, task: str, threads: int = 1) -> None:
        ort = require_extra("onnxruntime", "export")
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


class TorchBackend:
    """The eager ``nn.Module`` from the model package, under ``torch.inference_mode``.

    Measured on 2 busy cores (bench/serve.py), torch's default two intra-op threads made one
    small-CNN request take ~70 ms inside the server against ~0.4 ms with one thread: its worker
    threads contend with the event loop and the neighbours for the same cores.
    """

    name = "torch"

    def __init__(self, model: object, task: str, threads: int | None = None) -> None:
        if threads:  # process-wide; see load_served_model
            import torch

            torch.set_num_threads(threads)
        self._model = model
        self._task = task

    def predict(self, batch: Array) -> Array:
        import torch

        with torch.inference_mode():
            outputs = self._model(torch.from_numpy(batch))  # type: ignore[operator]
        return to_probabilities(outputs.float().numpy(), self._task)
