"""``kiln serve RUN_DIR|models:/NAME@ALIAS|EXPORT_PATH [--backend onnx|torch] [--port 8000] ...``.

Serves the model over HTTP until SIGTERM (exit 0 once requests in flight have finished) or Ctrl-C.
Every prediction is logged to ``--state-dir`` (default ``<run>/serve_state/``) for feedback and
``kiln monitor`` unless ``--no-prediction-log``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from kiln.serve.backends import DEFAULT_BACKEND, SERVE_BACKENDS

    parser = subparsers.add_parser(
        "serve", help="serve a model over HTTP (FastAPI + uvicorn, Prometheus metrics)",
        description="Serve a run's model: POST /predict, GET /health, /ready, /metadata, /metrics, "
                    "/docs. The onnx backend (default) uses the run's ONNX export, creating it "
                    "(with a parity check) when there is none, and refuses an export whose parity "
                    "record (models/exports.json) failed or is missing unless --allow-unverified.",
        allow_abbrev=False,
    )
    parser.add_argument("source", help="a run directory, models:/NAME@ALIAS | models:/NAME/VERSION, "
                                       "or an export file (models/model.onnx)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: "
                                                            "this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 for a free one, named in the 'serving ... on' line)")
    parser.add_argument("--backend", choices=SERVE_BACKENDS.names(), help="; ".join(
        f"{e.name}: {e.description}{' (default)' if e.name == DEFAULT_BACKEND else ''}" for e in SERVE_BACKENDS))
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--max-batch", type=int, default=256,
                        help="most instances per request, and per micro-batch (default 256)")
    parser.add_argument("--max-body-mb", type=float, default=8.0,
                        help="largest request body in MiB, refused with 413 before it is read (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0,
                        help="micro-batching: wait up to this long to group concurrent requests into "
                             "one model call (default 0: off)")
    parser.add_argument("--grace-seconds", type=float, default=30.0,
                        help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="serve an export whose parity record failed or is missing (e.g. an "
                             ".onnx file copied without models/exports.json); refused otherwise, "
                             "exit 1. The torch backend serves the reference model and never needs it")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of ONNX Runtime or torch per process (default 1; "
                             "0: the runtime's default)")
    _add_monitor_arguments(parser)
    parser.set_defaults(handler=run)


def _add_monitor_arguments(parser: Any) -> None:
    group = parser.add_argument_group("monitoring (prediction log, POST /feedback, live accuracy, drift)")
    group.add_argument("--state-dir", type=Path,
                       help="where the prediction log (monitor.db) lives; default <run>/serve_state/ "
                            "for a run or export file, ~/.local/state/kiln/serve/NAME/ for models:/")
    group.add_argument("--no-prediction-log", action="store_true",
                       help="log nothing (POST /feedback then answers 409, no accuracy metrics)")
    group.add_argument("--log-inputs", action="store_true",
                       help="also store each instance in full, as JSON (default: a summary only: "
                            "the first 64 values, or per-channel mean and std of an image)")
    group.add_argument("--log-retention-days", type=float, default=30.0,
                       help="delete logged predictions older than this (default 30)")
    group.add_argument("--log-max-mb", type=float, default=1024.0,
                       help="keep the log under this size, deleting the oldest rows (default 1024)")
    group.add_argument("--accuracy-window", type=int, default=1000,
                       help="kiln_model_accuracy covers the last N feedback labels (default 1000)")
    group.add_argument("--drift-window", type=int, default=1000,
                       help="the drift PSI on /metrics covers the last N logged predictions, "
                            "published from 100 of them (default 1000)")


def run(args: argparse.Namespace) -> int:
    from kiln.errors import UsageError

    for name in ("workers", "max_batch"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port", allowed="0 to 65535 (0: any free one)")
    if not all(math.isfinite(v) for v in (args.max_body_mb, args.batch_wait_ms, args.grace_seconds)):
        raise UsageError("--max-body-mb, --batch-wait-ms and --grace-seconds must be finite numbers")
    if args.max_body_mb <= 0 or args.batch_wait_ms < 0 or args.grace_seconds < 0 or args.threads < 0:
        raise UsageError("--max-body-mb must be positive; --batch-wait-ms, --grace-seconds and "
                         "--threads must not be negative")
    from kiln.cli.args import source as check_source
    from kiln.monitor.options import check as check_monitor
    from kiln.monitor.store import Retention

    check_monitor(Retention(args.log_retention_days, args.log_max_mb), args.accuracy_window, args.drift_window)
    from kiln.serve.app import require

    check_source(args.source)
    for module in ("fastapi", "uvicorn", "prometheus_client", "python_multipart", "PIL", "orjson"):
        require(module)
    from kiln.serve.model import prepare_model
    from kiln.serve.server import ServeOptions, serve

    source = prepare_model(args.source, args.backend, allow_unverified=args.allow_unverified)
    monitor = _monitor_options(args, source)
    options = ServeOptions(
        host=args.host, port=args.port, workers=args.workers, max_batch=args.max_batch,
        max_body_mb=args.max_body_mb, batch_wait_ms=args.batch_wait_ms,
        grace_seconds=args.grace_seconds, threads=args.threads, monitor=monitor,
    )
    return serve(source, options)


def _monitor_options(args: argparse.Namespace, source: Any) -> Any:
    """The monitoring options, with the log created now: a state directory that cannot be
    written stops the start here, once, rather than in every worker."""
    if args.no_prediction_log:
        return None
    from kiln.monitor.options import MonitorOptions, default_state_dir
    from kiln.monitor.store import Retention, create

    state_dir = args.state_dir or default_state_dir(source.package_dir, source.registry.get("name"))
    options = MonitorOptions(state_dir.resolve(), Retention(args.log_retention_days, args.log_max_mb),
                             args.log_inputs, args.accuracy_window, args.drift_window)
    path = create(options.state_dir)
    print(f"prediction log: {path}", flush=True)
    return options
