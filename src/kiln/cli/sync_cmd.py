"""``kiln sync RUN_DIR [--uri URI]``: send a run's logged events to MLflow (idempotent)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sync", help="replay a run's events.jsonl into MLflow", allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--uri", help="tracking URI (default: the run's own, else tracking.uri / $MLFLOW_TRACKING_URI)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.tracking.sync import sync_run

    for run_dir in args.run_dirs:
        report = sync_run(run_dir, args.uri)
        model = ", model logged" if report.model_logged else ""
        print(f"{run_dir}: {report.metrics_sent} metric values sent to {report.tracking_uri} (run {report.run_id}{model})")
    return 0
