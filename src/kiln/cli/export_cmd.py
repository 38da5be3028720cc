"""``kiln export RUN_DIR|URI --format onnx,torch_export,torchscript [--quantize int8]``.

Every export is reloaded and compared with the eager model; the command exits 1 when any format
fails (its file is then kept only as ``<file>.failed``), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from kiln.cli.common import print_table


def add_parser(subparsers: Any) -> None:
    from kiln.export.catalog import EXPORT_FORMATS, QUANTIZATIONS
    from kiln.export.tolerance import BATCH_SIZES, FP32, INT8, SAMPLES

    parser = subparsers.add_parser(
        "export", help="export a trained model (ONNX, torch.export, TorchScript) with parity checks",
        description="Export a run's model and prove each export against the eager model on "
                    "held-out samples at several batch sizes. Results: <run>/models/exports.json "
                    "and MODEL_CARD.md.",
        allow_abbrev=False,
    )
    parser.add_argument("run_dir", help="a run directory (runs/<name>_<time>/) or models:/NAME@ALIAS | models:/NAME/VERSION")
    formats = ", ".join(f"{e.name} ({e.description})" for e in EXPORT_FORMATS)
    parser.add_argument(
        "--format", default="onnx,torch_export", metavar="FORMATS",
        help=f"comma-separated: {formats}. Default: onnx,torch_export",
    )
    parser.add_argument("--quantize", choices=QUANTIZATIONS.names(),
                        help="also write " + "; or ".join(e.description for e in QUANTIZATIONS))
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; the one used is recorded)")
    parser.add_argument("--rtol", type=float, default=FP32.rtol, help=f"fp32 relative tolerance (default {FP32.rtol:g})")
    parser.add_argument("--atol", type=float, default=FP32.atol, help=f"fp32 absolute tolerance (default {FP32.atol:g})")
    parser.add_argument("--int8-min-agreement", type=float, default=INT8.min_agreement, metavar="SHARE",
                        help=f"int8: least share of samples with the eager model's predicted class (default {INT8.min_agreement:g})")
    parser.add_argument("--int8-rtol", type=float, help="int8: also require outputs within this relative tolerance")
    parser.add_argument("--int8-atol", type=float, help="int8: also require outputs within this absolute tolerance")
    parser.add_argument("--samples", type=int, default=SAMPLES, help=f"held-out samples compared (default {SAMPLES})")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)),
                        help=f"batch sizes compared at (default {','.join(map(str, BATCH_SIZES))})")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the exports to the run's MLflow run")
    parser.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace) -> Any:
    from kiln.errors import UsageError
    from kiln.export.run import ExportOptions, parse_formats
    from kiln.export.tolerance import Tolerance

    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r} must be comma-separated integers, e.g. 1,7,32") from None
    for option in ("rtol", "atol", "int8_rtol", "int8_atol", "int8_min_agreement"):
        value = getattr(args, option)
        high = 1.0 if option == "int8_min_agreement" else math.inf
        if value is not None and not 0 <= value <= high:  # NaN fails too
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} {value} is out of range",
                             allowed="0 to 1 (a share of samples)" if high == 1 else "0 or more")
    int8 = None
    if args.int8_rtol is not None or args.int8_atol is not None or args.int8_min_agreement is not None:
        int8 = Tolerance(args.int8_rtol, args.int8_atol, args.int8_min_agreement)
    return ExportOptions(
        formats=parse_formats(args.format), quantize=args.quantize, opset=args.opset,
        tolerance=Tolerance(args.rtol, args.atol), int8_tolerance=int8, samples=args.samples,
        batch_sizes=batch_sizes, mlflow=not args.no_mlflow,
    )


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.export.run import export_run

    report = export_run(source(args.run_dir), options_from_args(args))
    rows = []
    for fmt, rec in report.records.items():
        parity = rec.get("parity") or {}
        agreement = parity.get("agreement")
        rows.append([
            fmt, rec["file"], _size(rec.get("size_bytes")), parity.get("max_abs_diff"),
            parity.get("max_rel_diff"), None if agreement is None else f"{agreement:.2%}",
            "PASS" if rec["passed"] else "FAIL",
        ])
    print_table(f"exports of {report.run_dir.name}",
                ["format", "file", "size", "max abs diff", "max rel diff", "agreement", "result"], rows)
    inputs = {p["inputs"] for r in report.records.values() if (p := r.get("parity"))}
    print(f"parity inputs: {'; '.join(sorted(inputs)) or '-'}")
    print(f"written: {report.exports_json}, {report.model_card}")
    if report.mlflow:
        print(f"mlflow: {report.mlflow}")
    if not report.passed:
        print("error: export failed:\n  " + "\n  ".join(report.failures()), file=sys.stderr)
        return 1
    return 0


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e3:.1f} kB"
