"""``kiln sync RUN_DIR [--uri URI] [--wait S]``: send a run's logged events to MLflow (idempotent).

A run whose MLflow finisher is still at work is waited for up to ``--wait`` seconds, then taken over.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sync", help="replay a run's events.jsonl into MLflow", allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--uri", help="tracking URI (default: the run's own, else tracking.uri / $MLFLOW_TRACKING_URI)")
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long a run's MLflow finisher still at work gets before sync takes over (default 60)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import run_dir as check_run_dir
    from kiln.tracking.sync import sync_run

    for run_dir in args.run_dirs:  # every one, before any is sent
        check_run_dir(run_dir, ("logs/events.jsonl",))
    for run_dir in args.run_dirs:
        report = sync_run(run_dir, args.uri, wait=args.wait)
        model = ", model logged" if report.model_logged else ""
        print(f"{run_dir}: {report.metrics_sent} metric values sent to {report.tracking_uri} (run {report.run_id}{model})")
    return 0
