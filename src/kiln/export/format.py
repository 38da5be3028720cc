"""The ExportFormat protocol: everything kiln needs to know about one way to deploy a model.

A format says what file it writes, how to write it from the eager model (or from another format's
file), how to run that file for the parity check, which tolerance holds it (by its precision), and
what its record in ``exports.json`` says besides the numbers. ``export_run`` does the rest for
every format alike: staging, parity, ``.failed`` files, records and the model card.

Adding a format is one module (a class like the ones below) and one registration in
``kiln.export.catalog``; ``kiln.testing.exporter_contract.ExporterContract`` checks it.

>>> from kiln.export.catalog import EXPORT_FORMATS
>>> EXPORT_FORMATS.build("onnx").file  # doctest: +SKIP
'model.onnx'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from kiln.export.parity import Runner

Precision = Literal["fp32", "int8"]
FAILED_SUFFIX = ".failed"  # an export that missed its tolerance is kept as <file>.failed


@dataclass(frozen=True)
class ExportJob:
    """What every format of one export works from."""

    model: nn.Module  # the eager model, on the CPU, in eval mode
    example: torch.Tensor  # two held-out inputs: what a tracing exporter traces with
    models_dir: Path  # the model package; a derived format finds its source's file here
    opset: int | None = None  # ONNX formats: the opset asked for (None: the exporter's default)

    def exported(self, file: str) -> Path | None:
        """The file an earlier format of this export wrote, under its final name or kept as
        ``.failed`` (a derived format still converts it; its own parity check judges the result)."""
        final = self.models_dir / file
        candidates = (final, final.with_name(final.name + FAILED_SUFFIX))
        return next((c for c in candidates if c.is_file()), None)


class ExportFormat(Protocol):
    """One export format; a class whose class attributes answer the properties below will do.
    ``export`` raises ExportError when it cannot write the file (the record keeps the message)."""

    @property
    def name(self) -> str:
        """The --format name, and the key of the format's record in exports.json."""
        ...

    @property
    def file(self) -> str:
        """The file written into models/, e.g. ``model.onnx``."""
        ...

    @property
    def precision(self) -> Precision:
        """int8 formats are held to ``ExportOptions.int8_tolerance``, the others to ``.tolerance``."""
        ...

    @property
    def legacy(self) -> bool:
        """Kept for old runtimes only; the model card marks it."""
        ...

    @property
    def source(self) -> str | None:
        """The format whose file this one converts, exported first (None: from the model)."""
        ...

    @property
    def packages(self) -> tuple[str, ...]:
        """The distributions whose versions the record keeps."""
        ...

    @property
    def loading(self) -> str:
        """How a user runs the file, for the model card; ``{file}`` becomes the file's name."""
        ...

    def export(self, job: ExportJob, path: Path) -> None:
        """Write the export to ``path`` (a staging file; kiln moves it into place)."""
        ...

    def load(self, path: Path) -> Runner:
        """Run the file as a deployment would, from the file alone: inputs in, raw outputs out."""
        ...

    def describe(self, path: Path) -> dict[str, Any]:
        """What else the record says about the written file (ONNX: its opset); {} for nothing."""
        ...
