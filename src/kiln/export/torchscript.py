"""TorchScript (legacy): kept for users whose runtime still loads ``torch.jit`` files.

torch deprecates ``torch.jit`` in favour of ``torch.export``; new deployments should use the
``torch_export`` or ``onnx`` formats. The model is traced (kiln's models have no data-dependent
control flow), and the parity check at several batch sizes would catch a trace that baked in the
example's batch size.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kiln.errors import ExportError
from kiln.export.format import ExportJob, Precision
from kiln.export.parity import Array, Runner


class TorchScriptFormat:
    """``model.torchscript.pt``, traced (legacy: new deployments use torch_export or onnx)."""

    name = "torchscript"
    file = "model.torchscript.pt"
    precision: Precision = "fp32"
    legacy = True
    source = None
    packages = ("torch",)
    loading = 'torch.jit.load("{file}")(x)'

    def export(self, job: ExportJob, path: Path) -> None:
        export_torchscript(job.model, job.example, path)

    def load(self, path: Path) -> Runner:
        return torchscript_runner(path)

    def describe(self, path: Path) -> dict[str, Any]:
        return {}


@contextlib.contextmanager
def legacy_jit() -> Iterator[None]:
    """Silence torch's deprecation of ``torch.jit.*``: the user asked for this legacy format on
    purpose (the CLI help says it is legacy). Only that DeprecationWarning is filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example`` and save it to ``path``."""
    try:
        with legacy_jit(), torch.no_grad():
            traced = torch.jit.trace(model, (example,))  # type: ignore[no-untyped-call]
            traced.save(str(path))
    except Exception as exc:  # tracing raises many types; all mean the same to a user
        first = str(exc).strip().splitlines()
        raise ExportError(
            f"TorchScript tracing failed: {type(exc).__name__}: {first[0] if first else ''}"
        ) from exc


def torchscript_runner(path: Path) -> Runner:
    with legacy_jit():
        module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]

    def run(inputs: Array) -> Array:
        with legacy_jit(), torch.no_grad():
            out = module(torch.from_numpy(inputs))
        return np.asarray(out.detach().float().numpy(), dtype=np.float32)

    return run
