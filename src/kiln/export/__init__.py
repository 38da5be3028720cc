"""Export a trained model to deployable formats, each proven against the eager model.

Formats are entries of ``EXPORT_FORMATS`` (``onnx``: ONNX Runtime; ``torch_export``: ``.pt2``;
``torchscript``: legacy) and ``QUANTIZATIONS`` (``int8``: the ONNX model with int8 weights), each
an ``ExportFormat``. Results land in ``<run>/models/`` with ``exports.json`` and ``MODEL_CARD.md``;
see :func:`export_run`.

Names are imported on first use (PEP 562), so importing ``kiln.export.tolerance`` for the CLI's
help text does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports

if TYPE_CHECKING:
    from kiln.export.catalog import EXPORT_FORMATS, QUANTIZATIONS
    from kiln.export.format import ExportFormat, ExportJob
    from kiln.export.parity import ParityResult, check_parity
    from kiln.export.run import ExportOptions, ExportReport, export_run, parse_formats
    from kiln.export.tolerance import FP32, INT8, Tolerance

_PUBLIC = {
    "EXPORT_FORMATS": "kiln.export.catalog",
    "QUANTIZATIONS": "kiln.export.catalog",
    "ExportFormat": "kiln.export.format",
    "ExportJob": "kiln.export.format",
    "ExportOptions": "kiln.export.run",
    "ExportReport": "kiln.export.run",
    "export_run": "kiln.export.run",
    "parse_formats": "kiln.export.run",
    "ParityResult": "kiln.export.parity",
    "check_parity": "kiln.export.parity",
    "FP32": "kiln.export.tolerance",
    "INT8": "kiln.export.tolerance",
    "Tolerance": "kiln.export.tolerance",
}

__all__ = [
    "EXPORT_FORMATS",
    "FP32",
    "INT8",
    "QUANTIZATIONS",
    "ExportFormat",
    "ExportJob",
    "ExportOptions",
    "ExportReport",
    "ParityResult",
    "Tolerance",
    "check_parity",
    "export_run",
    "parse_formats",
]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
