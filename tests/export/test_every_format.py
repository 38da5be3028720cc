"""Every entry of EXPORT_FORMATS and QUANTIZATIONS passes kiln's exporter contract: exported from a
tiny trained model through ``kiln export``'s code, it meets its tolerance, runs from its file
alone, and its record says what it is. The cases come from the catalogs themselves, so a format
registered later is checked without a line here."""

from __future__ import annotations

import pytest

from kiln.export.catalog import EXPORT_FORMATS, QUANTIZATIONS
from kiln.export.format import ExportFormat
from kiln.testing import ExporterContract

CASES = [("format", name) for name in EXPORT_FORMATS.names()] + [
    ("quantization", name) for name in QUANTIZATIONS.names()]


class TestEveryCatalogFormat(ExporterContract):
    @pytest.fixture(scope="class", params=CASES, ids=[f"{kind}:{name}" for kind, name in CASES])
    @classmethod
    def export_format(cls, request: pytest.FixtureRequest) -> ExportFormat:
        kind, name = request.param
        return (EXPORT_FORMATS if kind == "format" else QUANTIZATIONS).build(name)


def test_the_catalogs_hold_the_formats_kiln_export_documents() -> None:
    assert EXPORT_FORMATS.names() == ["onnx", "torch_export", "torchscript"]
    assert QUANTIZATIONS.names() == ["int8"]
    assert [f.name for f in (QUANTIZATIONS.build("int8"),)] == ["onnx_int8"]
