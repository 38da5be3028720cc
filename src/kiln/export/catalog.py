"""The export format catalogs: what ``kiln export --format`` and ``--quantize`` can name.

Entries are ``package.module:Class`` strings of ExportFormat classes (``kiln.export.format``), so
listing them for ``--help`` or checking a name imports neither torch nor ONNX. ``--format`` picks
from EXPORT_FORMATS; ``--quantize`` picks from QUANTIZATIONS, whose formats convert another
format's file (their ``source``), which must then be exported too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.catalog import Catalog

if TYPE_CHECKING:
    from kiln.export.format import ExportFormat

EXPORT_FORMATS: Catalog[ExportFormat] = Catalog("export format")
EXPORT_FORMATS.register("onnx", "kiln.export.onnx:OnnxFormat", "ONNX Runtime, dynamic batch")
EXPORT_FORMATS.register("torch_export", "kiln.export.torch_export:TorchExportFormat", ".pt2")
EXPORT_FORMATS.register(
    "torchscript", "kiln.export.torchscript:TorchScriptFormat",
    "legacy: torch.jit is deprecated, for old runtimes only",
)

QUANTIZATIONS: Catalog[ExportFormat] = Catalog("quantization")
QUANTIZATIONS.register(
    "int8", "kiln.export.quantize:OnnxInt8Format",
    "an int8 dynamically quantized ONNX model (needs onnx in --format)",
)


def every_format() -> list[ExportFormat]:
    """One of each format of both catalogs (this imports them all), e.g. to find a record's format."""
    return [*(EXPORT_FORMATS.build(n) for n in EXPORT_FORMATS.names()),
            *(QUANTIZATIONS.build(n) for n in QUANTIZATIONS.names())]
