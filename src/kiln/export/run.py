"""``export_run``: export a run's model to each format, prove parity, record it, publish it.

Each format (an ExportFormat of ``kiln.export.catalog``) is written into a staging directory
inside ``models/``, reloaded from that file and compared with the eager model. Only an export that
meets its tolerance is moved to its final name; one that misses is kept as ``<file>.failed`` for
inspection (nothing loads a ``.failed`` file by accident), and one whose conversion raised leaves
no file. Either way it gets a record.

>>> report = export_run("runs/digits_mlp_20261123_101500", ExportOptions(formats=("onnx",)))  # doctest: +SKIP
>>> report.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kiln.catalog import did_you_mean
from kiln.errors import UsageError
from kiln.export.catalog import EXPORT_FORMATS, QUANTIZATIONS
from kiln.export.format import ExportFormat, ExportJob
from kiln.export.one import eager_runner, export_one
from kiln.export.parity import ParityResult, Runner, check_parity
from kiln.export.record import write_exports, write_model_card
from kiln.export.tolerance import BATCH_SIZES, FP32, INT8, INT8_REGRESSION, SAMPLES, Tolerance
from kiln.models.package import ModelPackage
from kiln.runs.environment import cpu


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how strictly to check it. ``int8_tolerance`` None: class agreement
    (``INT8``), or a loose elementwise bound (``INT8_REGRESSION``) for regression models."""

    formats: tuple[str, ...] = ("onnx", "torch_export")
    quantize: str | None = None
    opset: int | None = None  # None: the exporter's default opset (recorded in exports.json)
    tolerance: Tolerance = FP32
    int8_tolerance: Tolerance | None = None
    samples: int = SAMPLES
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    mlflow: bool = True


@dataclass(frozen=True)
class ExportReport:
    run_dir: Path
    models_dir: Path
    records: dict[str, dict[str, Any]]
    exports_json: Path
    model_card: Path
    mlflow: str | None = None  # what happened logging to MLflow (None: the run has no MLflow run)

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.records.values())

    def failures(self) -> list[str]:
        """One line per failed format, saying why and by how much."""
        lines = []
        for fmt, rec in self.records.items():
            if rec["passed"]:
                continue
            why = rec["error"] or "; ".join((rec.get("parity") or {}).get("misses", []))
            kept = f" (kept as {rec['file']} for inspection)" if rec["file"] else ""
            lines.append(f"{fmt}: {why}{kept}")
        return lines


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,torch_export"`` to a tuple; UsageError naming the allowed formats otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip() for f in items if f.strip()))
    allowed = EXPORT_FORMATS.names()
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise UsageError(
                f"unknown export format {fmt!r}.{did_you_mean(fmt, allowed)} "
                f"Allowed: {', '.join(allowed)}"
            )
    if not formats:
        raise UsageError(f"no export format given; allowed: {', '.join(allowed)}")
    return formats


def plan_formats(options: ExportOptions) -> list[ExportFormat]:
    """The formats ``options`` ask for, checked, in the order they are exported: catalog order,
    each derived format (``--quantize``) right after the format whose file it converts."""
    names = parse_formats(options.formats)
    wanted = [(name, EXPORT_FORMATS.build(name)) for name in EXPORT_FORMATS.names() if name in names]
    if options.quantize is not None:
        if options.quantize not in QUANTIZATIONS:
            raise UsageError(f"unknown quantization {options.quantize!r}; "
                             f"allowed: {', '.join(QUANTIZATIONS.names())}")
        wanted.append((f"{options.quantize} quantization", QUANTIZATIONS.build(options.quantize)))
    chosen = {fmt.name for _, fmt in wanted}
    for label, fmt in wanted:
        if fmt.source is not None and fmt.source not in chosen:
            raise UsageError(f"{label} works on the {fmt.source} export: add {fmt.source} to --format")
    if options.samples < 1 or not options.batch_sizes or min(options.batch_sizes) < 1:
        raise UsageError(f"samples ({options.samples}) and batch sizes {options.batch_sizes} must be positive")
    order = [fmt for _, fmt in wanted if fmt.source is None]
    for fmt in (fmt for _, fmt in wanted if fmt.source is not None):
        at = max(i for i, f in enumerate(order) if fmt.source in (f.name, f.source))
        order.insert(at + 1, fmt)
    return order


def export_run(path: str | Path, options: ExportOptions | None = None) -> ExportReport:
    """Export the model of a run directory (or ``models:/`` URI) as ``options`` say."""
    from kiln.export.publish import log_to_mlflow
    from kiln.registry.load import load_package, resolve_package_dir

    options = options or ExportOptions()
    formats = plan_formats(options)
    models_dir = resolve_package_dir(path)
    root = models_dir.parent
    package = load_package(models_dir)
    records = export_package(package, models_dir, formats, options)
    exports_json = write_exports(models_dir, str(package.meta.get("run", root.name)), records)
    card = write_model_card(root, models_dir, package.meta)
    status = None
    if options.mlflow:
        files = [models_dir / r["file"] for r in records.values() if r["passed"]]
        status = log_to_mlflow(root, [*files, exports_json, card])
    return ExportReport(root, models_dir, records, exports_json, card, status)


def export_package(package: ModelPackage, models_dir: Path, formats: Sequence[ExportFormat],
                   options: ExportOptions) -> dict[str, dict[str, Any]]:
    """Export ``package`` (loaded from ``models_dir``) to each of ``formats``, in that order, each
    checked on the run's held-out inputs. Returns a record per format; writes no exports.json."""
    from kiln.export.samples import held_out_inputs, random_inputs

    model, spec = package.model.cpu().eval(), package.spec
    inputs, source = held_out_inputs(models_dir.parent, spec, options.samples)
    example = torch.from_numpy(inputs[:2] if len(inputs) >= 2 else random_inputs(spec, 2))
    job = ExportJob(model, example, models_dir, options.opset)
    tolerances = {"fp32": options.tolerance, "int8": options.int8_tolerance
                  or (INT8_REGRESSION if spec.task == "regression" else INT8)}
    eager = eager_runner(model)

    def check(runner: Runner, tolerance: Tolerance) -> ParityResult:
        return check_parity(eager, runner, inputs, tolerance, spec.task, source, options.batch_sizes)

    records: dict[str, dict[str, Any]] = {}
    measured_on = cpu()  # read once: every format's parity ran on it
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".export-") as tmp:
        for fmt in formats:
            record = export_one(fmt, job, check, tolerances[fmt.precision], Path(tmp))
            records[fmt.name] = {**record, "cpu": measured_on}
    return records
