"""``kiln predict MODEL --input PATH --output PATH [--top-k K] [--backend onnx|torch] ...``.

Exit 0 when every row was predicted, 1 when some were not (listed in ``OUTPUT.errors.jsonl``) or
``--on-error fail`` met a bad row, 2 for an input or output kiln cannot use (before any work).
Run the same command again after a kill: it goes on from the last committed chunk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict a file or folder of inputs with a model (resumable batch job)",
        description="Predict every row of a CSV/Parquet table, .npy/.npz array, JSON lines file "
                    "(one /predict instance per line) or folder of images, with the preprocessing "
                    "kiln serve applies. Output by suffix: .csv, .parquet or .jsonl. A killed job "
                    "resumes when the same command runs again.",
        allow_abbrev=False,
    )
    parser.add_argument("model", help="a run directory, models:/NAME@ALIAS | models:/NAME/VERSION, "
                                      "or an export file (models/model.onnx)")
    parser.add_argument("--input", "-i", required=True, type=Path, help="the file or image folder to predict")
    parser.add_argument("--output", "-o", required=True, type=Path,
                        help="where the predictions go (.csv, .parquet or .jsonl)")
    parser.add_argument("--top-k", type=int, default=1, help="classes per row, most likely first (default 1)")
    parser.add_argument("--backend", choices=("onnx", "torch"),
                        help="default: onnx when the run has a parity-checked ONNX export, else torch")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per model call (default 256)")
    parser.add_argument("--chunk-size", type=int, help="rows per committed chunk (default 10000; images 256)")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding images (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of ONNX Runtime or torch (default 0: the runtime's "
                             "default, every core; 1 is often faster for a small model on a busy machine)")
    parser.add_argument("--id-column", action="append", default=[], metavar="NAME",
                        help="a column passed through rather than fed to the model (tables of a model "
                             "without feature names; repeatable)")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                        help="skip (default): bad rows go to OUTPUT.errors.jsonl, exit 1 at the end; "
                             "fail: stop at the first bad row")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output, or start a partial job over")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="run an ONNX export whose parity record failed, is missing or no longer "
                             "matches the file (refused otherwise, as by kiln serve)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.batch_predict import PredictOptions, predict_file
    from kiln.cli.args import source as check_source

    check_source(args.model)
    options = PredictOptions(
        backend=args.backend, batch_size=args.batch_size, chunk_size=args.chunk_size, top_k=args.top_k,
        workers=args.workers, threads=args.threads, id_columns=tuple(args.id_column), on_error=args.on_error,
        overwrite=args.overwrite, allow_unverified=args.allow_unverified, progress=not args.quiet and sys.stderr.isatty(),
    )
    report = predict_file(args.model, args.input, args.output, options)
    if not args.quiet:
        rate = report.rows_per_second
        resumed = f", resumed after {report.resumed_chunks} chunks" if report.resumed_chunks else ""
        print(f"predicted {report.predicted:,} of {report.rows:,} rows with {report.backend} in "
              f"{report.seconds:.1f} s ({rate:,.0f} rows/s{resumed}) -> {report.output}")
    if report.failed:
        print(f"{report.failed:,} rows could not be predicted; each is in {report.errors_file} with "
              "the reason", file=sys.stderr)
        return 1
    return 0
