"""``export_run``: export a run's model to each format, prove parity, record it, publish it.

Each format is written into a staging directory inside ``models/``, reloaded from that file and
compared with the eager model. Only an export that meets its tolerance is moved to its final name;
one that misses is kept as ``<file>.failed`` for inspection (nothing loads a ``.failed`` file by
accident), and one whose conversion raised leaves no file. Either way it gets a record.

>>> report = export_run("runs/digits_mlp_20261123_101500", ExportOptions(formats=("onnx",)))  # doctest: +SKIP
>>> report.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kiln.catalog import did_you_mean
from kiln.checkpoint.manifest import sha256_file
from kiln.errors import ExportError, UsageError
from kiln.export.parity import Array, Runner, check_parity
from kiln.export.record import now_iso, write_exports, write_model_card
from kiln.export.tolerance import BATCH_SIZES, FP32, INT8, INT8_REGRESSION, SAMPLES, Tolerance
from kiln.runs.environment import cpu

log = logging.getLogger("kiln.export")

FORMATS = ("onnx", "torch_export", "torchscript")
QUANTIZATIONS = ("int8",)
FILES = {
    "onnx": "model.onnx",
    "onnx_int8": "model.int8.onnx",
    "torch_export": "model.pt2",
    "torchscript": "model.torchscript.pt",
}
FAILED_SUFFIX = ".failed"


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
    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(
                f"unknown export format {fmt!r}.{did_you_mean(fmt, list(FORMATS))} "
                f"Allowed: {', '.join(FORMATS)}"
            )
    if not formats:
        raise UsageError(f"no export format given; allowed: {', '.join(FORMATS)}")
    return formats


def export_run(path: str | Path, options: ExportOptions | None = None) -> ExportReport:
    """Export the model of a run directory (or ``models:/`` URI) as ``options`` say."""
    from kiln.export.publish import log_to_mlflow
    from kiln.export.samples import held_out_inputs, random_inputs
    from kiln.registry.load import load_package, resolve_package_dir

    options = options or ExportOptions()
    _validate(options)
    models_dir = resolve_package_dir(path)
    root = models_dir.parent
    package = load_package(models_dir)
    model, spec = package.model.cpu().eval(), package.spec
    inputs, source = held_out_inputs(root, spec, options.samples)
    example = torch.from_numpy(inputs[:2] if len(inputs) >= 2 else random_inputs(spec, 2))
    int8_tolerance = options.int8_tolerance or (INT8_REGRESSION if spec.task == "regression" else INT8)

    def check(runner: Runner, tolerance: Tolerance) -> Any:
        return check_parity(_eager(model), runner, inputs, tolerance, spec.task, source, options.batch_sizes)

    records: dict[str, dict[str, Any]] = {}
    measured_on = cpu()  # read once: every format's parity ran on it
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".export-") as tmp:
        staging = Path(tmp)
        for fmt in _ordered(options):
            build, load = _steps(fmt, model, example, models_dir, options.opset)
            tolerance = int8_tolerance if fmt == "onnx_int8" else options.tolerance
            records[fmt] = {**_export_one(fmt, build, load, check, tolerance, staging, models_dir),
                            "cpu": measured_on}
    exports_json = write_exports(models_dir, str(package.meta.get("run", root.name)), records)
    card = write_model_card(root, models_dir, package.meta)
    status = None
    if options.mlflow:
        files = [models_dir / r["file"] for r in records.values() if r["passed"]]
        status = log_to_mlflow(root, [*files, exports_json, card])
    return ExportReport(root, models_dir, records, exports_json, card, status)


def _validate(options: ExportOptions) -> None:
    parse_formats(options.formats)
    if options.quantize is not None:
        if options.quantize not in QUANTIZATIONS:
            raise UsageError(f"unknown quantization {options.quantize!r}; allowed: {', '.join(QUANTIZATIONS)}")
        if "onnx" not in options.formats:
            raise UsageError("int8 quantization works on the ONNX model: add onnx to --format")
    if options.samples < 1 or not options.batch_sizes or min(options.batch_sizes) < 1:
        raise UsageError(f"samples ({options.samples}) and batch sizes {options.batch_sizes} must be positive")


def _ordered(options: ExportOptions) -> list[str]:
    order = [f for f in FORMATS if f in options.formats]
    if options.quantize == "int8":
        order.insert(order.index("onnx") + 1, "onnx_int8")  # quantizes the staged fp32 ONNX file
    return order


def _steps(fmt: str, model: nn.Module, example: torch.Tensor, models_dir: Path,
           opset: int | None) -> tuple[Callable[[Path], None], Callable[[Path], Runner]]:
    """How to build a format's file and how to run it from that file."""
    if fmt == "onnx":
        from kiln.export.onnx import export_onnx, onnx_runner

        return (lambda p: export_onnx(model, example, p, opset)), onnx_runner
    if fmt == "onnx_int8":
        from kiln.export.onnx import onnx_runner
        from kiln.export.quantize import quantize_int8

        def build(p: Path) -> None:
            # The fp32 file has just been moved to its final (or .failed) name; quantize that.
            fp32 = models_dir / FILES["onnx"]
            source = next((c for c in (fp32, fp32.with_name(fp32.name + FAILED_SUFFIX)) if c.is_file()), None)
            if source is None:
                raise ExportError("int8 quantization needs the fp32 ONNX export, which failed")
            quantize_int8(source, p)

        return build, onnx_runner
    if fmt == "torch_export":
        from kiln.export.torch_export import export_program, program_runner

        return (lambda p: export_program(model, example, p)), program_runner
    from kiln.export.torchscript import export_torchscript, torchscript_runner

    return (lambda p: export_torchscript(model, example, p)), torchscript_runner


def _export_one(fmt: str, build: Callable[[Path], None], load: Callable[[Path], Runner],
                check: Callable[[Runner, Tolerance], Any], tolerance: Tolerance,
                staging: Path, models_dir: Path) -> dict[str, Any]:
    final = models_dir / FILES[fmt]
    failed = final.with_name(final.name + FAILED_SUFFIX)
    for stale in (final, failed):  # an old file must not outlive the record that replaces it
        stale.unlink(missing_ok=True)
    staged = staging / FILES[fmt]
    record: dict[str, Any] = {
        "format": fmt, "file": None, "passed": False, "error": None, "precision":
        "int8" if fmt == "onnx_int8" else "fp32", "legacy": fmt == "torchscript",
        "exported_at": now_iso(), "versions": _versions(fmt),
    }
    start = time.perf_counter()
    try:
        build(staged)
    except ExportError as exc:
        record["error"] = str(exc)
        log.debug("export %s failed", fmt, exc_info=True)
        return record
    record["export_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    try:
        parity = check(load(staged), tolerance)
    except Exception as exc:  # a file that cannot be loaded or run is a failed export, not a crash
        record["error"] = f"the exported file could not be reloaded or run: {type(exc).__name__}: {exc}"
        log.debug("export %s failed to run", fmt, exc_info=True)
        os.replace(staged, failed)
        record.update(file=failed.name, size_bytes=failed.stat().st_size)
        return record
    record["parity_seconds"] = round(time.perf_counter() - start, 3)
    record["parity"] = parity.to_dict()
    record["passed"] = parity.passed
    if fmt.startswith("onnx"):
        from kiln.export.onnx import onnx_opset

        record["opset"] = onnx_opset(staged)
    target = final if parity.passed else failed
    os.replace(staged, target)
    record.update(file=target.name, size_bytes=target.stat().st_size, sha256=sha256_file(target))
    return record


def _eager(model: nn.Module) -> Runner:
    def run(inputs: Array) -> Array:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(inputs)).float().numpy(), dtype=np.float32)

    return run


def _versions(fmt: str) -> dict[str, str | None]:
    names = ["torch", "onnx", "onnxruntime", "onnxscript"] if fmt.startswith("onnx") else ["torch"]
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


