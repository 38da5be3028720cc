"""torch.export: an ``ExportedProgram`` saved as ``.pt2``, torch's own deployable graph format.

Reloaded with ``torch.export.load(path).module()``; no Python model code is needed to run it, and
it is the input of AOTInductor and ExecuTorch. The batch axis is dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kiln.errors import ExportError
from kiln.export.format import ExportJob, Precision
from kiln.export.parity import Array, Runner


class TorchExportFormat:
    """``model.pt2``: torch's own deployable graph (AOTInductor and ExecuTorch take it)."""

    name = "torch_export"
    file = "model.pt2"
    precision: Precision = "fp32"
    legacy = False
    source = None
    packages = ("torch",)
    loading = 'torch.export.load("{file}").module()(x)'

    def export(self, job: ExportJob, path: Path) -> None:
        export_program(job.model, job.example, path)

    def load(self, path: Path) -> Runner:
        return program_runner(path)

    def describe(self, path: Path) -> dict[str, Any]:
        return {}


def export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` with ``torch.export.export`` and save the program to ``path`` (.pt2)."""
    from kiln.export.onnx import dynamic_axes

    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=(dynamic_axes(example),))
        torch.export.save(program, str(path))
    except Exception as exc:  # torch.export raises many types; all mean the same to a user
        first = str(exc).strip().splitlines()
        raise ExportError(
            f"torch.export failed: {type(exc).__name__}: {first[0] if first else ''}"
        ) from exc


def program_runner(path: Path) -> Runner:
    """Run a saved program the way a deployment would: loaded from the file, not from memory."""
    module = torch.export.load(str(path)).module()

    def run(inputs: Array) -> Array:
        with torch.no_grad():
            out = module(torch.from_numpy(inputs))
        return np.asarray(out.detach().float().numpy(), dtype=np.float32)

    return run
